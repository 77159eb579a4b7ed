/// A measured transfer received by `zcprof sink` in a namespace of the test's own.
mod sink;
/// `--net veth` with scatter-gather off and on.
mod veth;
