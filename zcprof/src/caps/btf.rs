//! Kernel type layouts from BTF: the byte offsets of the `struct` members that programs read
//! with `bpf_probe_read_kernel` (they move between kernel versions and configurations).
//!
//! aya parses BTF too, but keeps its type lookup private; what is needed here is one walk over
//! the type section (the format is in the kernel's Documentation/bpf/btf.rst).
use std::collections::HashMap;

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;

/// One member of a struct or union.
#[derive(Clone, Debug)]
struct Member {
    name: String,
    type_id: u32,
    /// In bits from the start of the enclosing type.
    bit_offset: u32,
}

/// The structs and unions of one BTF blob, by type id (1-based).
pub struct Layouts {
    /// Kind and members of every type (members empty for kinds other than struct/union), and
    /// the id a modifier or typedef refers to.
    types: Vec<(u32, String, Vec<Member>)>,
    by_name: HashMap<String, u32>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl Layouts {
    /// The running kernel's BTF, read and parsed once per process (several users need it, and
    /// one parse of a few MiB of BTF is a second under emulation).
    #[must_use]
    pub fn vmlinux() -> Option<&'static Layouts> {
        static VMLINUX: std::sync::OnceLock<Option<Layouts>> = std::sync::OnceLock::new();
        VMLINUX
            .get_or_init(|| Layouts::parse(&std::fs::read("/sys/kernel/btf/vmlinux").ok()?))
            .as_ref()
    }

    /// Parses a little-endian BTF blob; `None` when it is not one.
    #[must_use]
    pub fn parse(b: &[u8]) -> Option<Layouts> {
        if u16_at(b, 0)? != MAGIC {
            return None;
        }
        let hdr_len = u32_at(b, 4)? as usize;
        let type_off = u32_at(b, 8)? as usize;
        let type_len = u32_at(b, 12)? as usize;
        let str_off = u32_at(b, 16)? as usize;
        let str_len = u32_at(b, 20)? as usize;
        let types_sec = b.get(hdr_len + type_off..hdr_len + type_off + type_len)?;
        let strings = b.get(hdr_len + str_off..hdr_len + str_off + str_len)?;
        let name = |off: u32| -> String {
            let start = off as usize;
            strings.get(start..).map_or_else(String::new, |s| {
                let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
                String::from_utf8_lossy(&s[..end]).into_owned()
            })
        };
        // Type id 0 is void; ids count from 1 in section order.
        let mut types = vec![(0, String::new(), Vec::new())];
        let mut by_name = HashMap::new();
        let mut at = 0;
        while at + 12 <= types_sec.len() {
            let name_off = u32_at(types_sec, at)?;
            let info = u32_at(types_sec, at + 4)?;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            at += 12;
            let mut members = Vec::new();
            let extra = match kind {
                1 | 14 | 17 => 4, // int, var, decl_tag
                3 => 12,          // array
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = at + i * 12;
                        let offset = u32_at(types_sec, m + 8)?;
                        members.push(Member {
                            name: name(u32_at(types_sec, m)?),
                            type_id: u32_at(types_sec, m + 4)?,
                            // With kind_flag the top 8 bits are a bitfield size.
                            bit_offset: if kind_flag {
                                offset & 0x00ff_ffff
                            } else {
                                offset
                            },
                        });
                    }
                    vlen * 12
                }
                6 | 13 => vlen * 8,   // enum, func_proto
                15 | 19 => vlen * 12, // datasec, enum64
                _ => 0,
            };
            at += extra;
            let type_name = name(name_off);
            let id = u32::try_from(types.len()).ok()?;
            if matches!(kind, KIND_STRUCT | KIND_UNION) && !type_name.is_empty() {
                // The first definition wins (split BTF has no duplicates in vmlinux).
                by_name.entry(type_name.clone()).or_insert(id);
            }
            types.push((kind, type_name, members));
        }
        Some(Layouts { types, by_name })
    }

    /// Byte offset of member `member` of `struct name`, looking through anonymous struct and
    /// union members (the kernel nests many fields in them, e.g. `sk_buff.sk`).
    #[must_use]
    pub fn member_offset(&self, name: &str, member: &str) -> Option<u32> {
        let id = *self.by_name.get(name)?;
        self.find(id, member, 0).map(|bits| bits / 8)
    }

    fn find(&self, id: u32, member: &str, base_bits: u32) -> Option<u32> {
        let (kind, _, members) = self.types.get(id as usize)?;
        if !matches!(*kind, KIND_STRUCT | KIND_UNION) {
            return None;
        }
        for m in members {
            if m.name == member {
                return Some(base_bits + m.bit_offset);
            }
        }
        // Anonymous members, whose own members are the struct's.
        members
            .iter()
            .filter(|m| m.name.is_empty())
            .find_map(|m| self.find(m.type_id, member, base_bits + m.bit_offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob with `struct outer { int a; union { long *sk; int x; }; }` laid out by hand.
    fn blob() -> Vec<u8> {
        let strings = b"\0outer\0a\0sk\0x\0int\0".to_vec();
        let s = |needle: &str| -> u32 {
            let n = needle.as_bytes();
            u32::try_from(
                strings
                    .windows(n.len() + 1)
                    .position(|w| &w[1..] == n && w[0] == 0)
                    .unwrap()
                    + 1,
            )
            .unwrap()
        };
        let mut types = Vec::new();
        let mut push = |v: &[u32]| {
            for x in v {
                types.extend_from_slice(&x.to_le_bytes());
            }
        };
        // 1: int
        push(&[s("int"), 1 << 24, 4, 32]);
        // 2: union { sk @0, x @0 }
        push(&[0, (KIND_UNION << 24) | 2, 8, s("sk"), 1, 0, s("x"), 1, 0]);
        // 3: struct outer { a @0, <anon> @64 }
        push(&[
            s("outer"),
            (KIND_STRUCT << 24) | 2,
            16,
            s("a"),
            1,
            0,
            0,
            2,
            64,
        ]);
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC.to_le_bytes());
        b.extend_from_slice(&[1, 0]);
        for v in [
            24u32,
            0,
            u32::try_from(types.len()).unwrap(),
            u32::try_from(types.len()).unwrap(),
            u32::try_from(strings.len()).unwrap(),
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&types);
        b.extend_from_slice(&strings);
        b
    }

    #[test]
    fn members_are_found_through_anonymous_unions() {
        let l = Layouts::parse(&blob()).expect("parses");
        assert_eq!(l.member_offset("outer", "a"), Some(0));
        assert_eq!(l.member_offset("outer", "sk"), Some(8));
        assert_eq!(l.member_offset("outer", "x"), Some(8));
        assert_eq!(l.member_offset("outer", "nope"), None);
        assert_eq!(l.member_offset("inner", "a"), None);
        assert!(Layouts::parse(b"not btf").is_none());
    }

    #[test]
    fn this_kernels_sk_buff() {
        let Some(l) = Layouts::vmlinux() else {
            eprintln!("skipped: this kernel has no /sys/kernel/btf/vmlinux");
            return;
        };
        let sk = l.member_offset("sk_buff", "sk").expect("sk_buff.sk");
        let data = l.member_offset("sk_buff", "data").expect("sk_buff.data");
        let len = l.member_offset("sk_buff", "len").expect("sk_buff.len");
        assert!(sk < len && len < data, "sk {sk}, len {len}, data {data}");
    }
}
