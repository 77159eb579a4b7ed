//! Kernel symbolization: kernel text addresses to function names, from /proc/kallsyms.
use std::fs;

/// Sorted kernel text symbols.
pub struct Kallsyms {
    symbols: Vec<(u64, String)>,
}

impl Kallsyms {
    /// Reads /proc/kallsyms. Without privileges the addresses read as zero; the table is then
    /// empty and every lookup fails.
    #[must_use]
    pub fn load() -> Kallsyms {
        Kallsyms::parse(&fs::read_to_string("/proc/kallsyms").unwrap_or_default())
    }

    /// Parses kallsyms text: `address type name [module]` per line.
    #[must_use]
    pub fn parse(text: &str) -> Kallsyms {
        let mut symbols: Vec<(u64, String)> = text
            .lines()
            .filter_map(|line| {
                let mut f = line.split_whitespace();
                let addr = u64::from_str_radix(f.next()?, 16).ok()?;
                let kind = f.next()?;
                let name = f.next()?;
                (addr != 0 && matches!(kind, "T" | "t" | "W" | "w"))
                    .then(|| (addr, name.to_owned()))
            })
            .collect();
        symbols.sort_unstable();
        Kallsyms { symbols }
    }

    /// The function containing `addr`: the symbol at or below it.
    #[must_use]
    pub fn resolve(&self, addr: u64) -> Option<&str> {
        let i = self.symbols.partition_point(|(a, _)| *a <= addr);
        i.checked_sub(1).map(|i| self.symbols[i].1.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_to_the_enclosing_function() {
        let k = Kallsyms::parse(
            "ffffffff81b6cc30 T _copy_to_iter\nffffffff81b6d9e0 T copy_page_to_iter\n\
             ffffffff81000000 D some_data\nffffffff81b6b780 t _copy_from_iter_nocache\n",
        );
        assert_eq!(k.resolve(0xffff_ffff_81b6_cc30), Some("_copy_to_iter"));
        assert_eq!(k.resolve(0xffff_ffff_81b6_cd00), Some("_copy_to_iter"));
        assert_eq!(k.resolve(0xffff_ffff_81b6_da00), Some("copy_page_to_iter"));
        assert_eq!(
            k.resolve(0xffff_ffff_81b6_b790),
            Some("_copy_from_iter_nocache")
        );
        assert_eq!(k.resolve(0x1000), None);
    }
}
