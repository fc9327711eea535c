//! Compact storage for millions of short strings: a column of strings in one buffer
//! and an interner that numbers distinct strings, both read back in order.

/// Millions of short strings (ids) in one buffer: one allocation instead of one per
/// row, and read back in order from contiguous memory.
#[derive(Debug, Clone, Default)]
pub struct StrColumn {
    bytes: String,
    /// End of string `i` in `bytes`.
    ends: Vec<usize>,
}

impl StrColumn {
    pub fn push(&mut self, s: &str) {
        self.bytes.push_str(s);
        self.ends.push(self.bytes.len());
    }

    /// Room for `n` more strings of about `bytes_each` bytes.
    pub fn reserve(&mut self, n: usize, bytes_each: usize) {
        self.ends.reserve(n);
        self.bytes.reserve(n.saturating_mul(bytes_each));
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let s = &self.bytes[start..end];
            start = end;
            s
        })
    }
}

/// Distinct strings, each stored once and referred to by number: the hundreds of
/// thousands of company names and ids of millions of rows.
///
/// Looking strings up is the hot step of loading (millions of rows against a table
/// larger than the caches), so each slot of the hash table carries the string's first
/// bytes itself: a lookup of a short string reads the control bytes and one slot, two
/// cache misses, where a set of boxed strings follows an index to an entry and the
/// entry to its heap string, four.
#[derive(Debug, Clone, Default)]
pub struct Interner {
    table: hashbrown::HashTable<Slot>,
    /// String number `i`.
    strings: StrColumn,
}

/// Bytes of a string kept in its slot (company names are mostly shorter).
const SLOT_HEAD: usize = 24;

#[derive(Debug, Clone, Copy)]
#[repr(align(32))]
struct Slot {
    id: u32,
    len: u32,
    head: [u8; SLOT_HEAD],
}

impl Slot {
    fn matches(&self, s: &str, strings: &StrColumn) -> bool {
        let b = s.as_bytes();
        self.len as usize == b.len()
            && if b.len() <= SLOT_HEAD {
                self.head[..b.len()] == *b
            } else {
                self.head == b[..SLOT_HEAD] && strings.get(self.id as usize) == s
            }
    }
}

/// A fast non-cryptographic hash: the keys are data, not attacker-chosen per request.
fn str_hash(s: &str) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(s)
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> u32 {
        let strings = &self.strings;
        let entry = self.table.entry(
            str_hash(s),
            |slot| slot.matches(s, strings),
            |slot| str_hash(strings.get(slot.id as usize)),
        );
        match entry {
            hashbrown::hash_table::Entry::Occupied(e) => e.get().id,
            hashbrown::hash_table::Entry::Vacant(v) => {
                let id = u32::try_from(self.strings.len()).expect("fewer than 2^32 strings");
                let mut head = [0u8; SLOT_HEAD];
                let n = s.len().min(SLOT_HEAD);
                head[..n].copy_from_slice(&s.as_bytes()[..n]);
                v.insert(Slot {
                    id,
                    len: u32::try_from(s.len()).expect("strings under 4 GiB"),
                    head,
                });
                self.strings.push(s);
                id
            }
        }
    }

    /// The number of `s`, if it was interned.
    pub fn lookup(&self, s: &str) -> Option<u32> {
        self.table
            .find(str_hash(s), |slot| slot.matches(s, &self.strings))
            .map(|slot| slot.id)
    }

    pub fn get(&self, i: u32) -> &str {
        self.strings.get(i as usize)
    }

    /// Every string with its number, in number order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &str)> {
        self.strings.iter().enumerate().map(|(i, n)| (i as u32, n))
    }

    pub fn len(&self) -> usize {
        self.strings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interner_numbers_short_long_and_alike_strings_once() {
        let mut i = Interner::default();
        let long_a = "a company name longer than the slot head, part a";
        let long_b = "a company name longer than the slot head, part b";
        let words = [
            "",
            "x",
            "acme inc",
            long_a,
            long_b,
            "exactly twenty-four byte",
        ];
        for (n, w) in words.iter().enumerate() {
            assert_eq!(i.intern(w), n as u32, "{w:?}");
        }
        // Again, after the table has grown past its first size.
        for n in 0..10_000 {
            i.intern(&format!("filler {n}"));
        }
        for (n, w) in words.iter().enumerate() {
            assert_eq!(i.intern(w), n as u32, "{w:?}");
            assert_eq!(i.lookup(w), Some(n as u32));
            assert_eq!(i.get(n as u32), *w);
        }
        assert_eq!(
            i.lookup("a company name longer than the slot head, part c"),
            None
        );
        assert_eq!(i.lookup("acme in"), None);
        assert_eq!(i.len(), words.len() + 10_000);
        assert_eq!(i.iter().nth(3), Some((3, long_a)));
    }

    #[test]
    fn string_column_and_interner_give_back_what_went_in() {
        let mut c = StrColumn::default();
        assert!(c.is_empty());
        c.reserve(3, 4);
        for s in ["cv_1", "", "cv_12 ü"] {
            c.push(s);
        }
        assert_eq!(c.len(), 3);
        assert_eq!((c.get(0), c.get(1), c.get(2)), ("cv_1", "", "cv_12 ü"));
        assert_eq!(c.iter().collect::<Vec<_>>(), ["cv_1", "", "cv_12 ü"]);

        let mut names = Interner::default();
        let (a, b, a2) = (
            names.intern("acme"),
            names.intern("beta"),
            names.intern("acme"),
        );
        assert_eq!((a, b, a2), (0, 1, 0));
        assert_eq!((names.len(), names.get(b)), (2, "beta"));
        assert_eq!(names.iter().collect::<Vec<_>>(), [(0, "acme"), (1, "beta")]);
    }
}
