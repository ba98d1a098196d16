//! Stable hashes: the same bytes give the same hash on every build and
//! machine, which `std`'s hasher does not promise.

use nudge_bytecode::Bundle;

/// How many bytes before the read position [`tail_hash`] covers: enough to
/// notice a rewritten file, cheap enough to check on every run.
pub const TAIL: usize = 64 * 1024;

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

const SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// A hash of the last 64 KiB of `prefix` and its length: compared on every
/// run to notice an events file that was rewritten rather than appended to.
pub fn tail_hash(prefix: &[u8]) -> String {
    let start = prefix.len().saturating_sub(TAIL);
    tail_hash_of(prefix.get(start..).unwrap_or_default(), prefix.len() as u64)
}

/// [`tail_hash`] of a prefix of `len` bytes ending with `tail`, its last
/// [`TAIL`] bytes (all of it when shorter): a streamed file keeps only those.
pub fn tail_hash_of(tail: &[u8], len: u64) -> String {
    debug_assert!(tail.len() as u64 == len.min(TAIL as u64));
    let h = fnv1a(SEED, tail);
    format!("{:016x}:{len}", fnv1a(h, &len.to_le_bytes()))
}

/// The bundle's wire encoding with source paths reduced to file names, as
/// the store keeps it: running the project from another directory is not a
/// new deploy.
pub fn portable(bundle: &Bundle) -> Vec<u8> {
    let mut b = bundle.clone();
    for f in &mut b.files {
        let name = std::path::Path::new(f.as_str())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        *f = name;
    }
    b.encode()
}

/// Identifies the run settings that change decisions but are not part of
/// the bundle: a history cannot be replayed under others. (Bundles are kept
/// in the history itself, as deploys.)
pub fn fingerprint(release_spread: i64, suppression: &[String]) -> String {
    let mut h = fnv1a(SEED, b"settings\n");
    h = fnv1a(h, &release_spread.to_le_bytes());
    let mut list: Vec<&String> = suppression.iter().collect();
    list.sort();
    for s in list {
        h = fnv1a(h, s.as_bytes());
        h = fnv1a(h, b"\n");
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_of_a_tail_is_the_hash_of_its_whole_prefix() {
        let prefix: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for len in [0, 10, TAIL - 1, TAIL, TAIL + 1, prefix.len()] {
            let p = &prefix[..len];
            let tail = &p[len.saturating_sub(TAIL)..];
            assert_eq!(tail_hash_of(tail, len as u64), tail_hash(p), "{len}");
        }
        // The length counts: the same tail after a longer prefix differs.
        let (a, b) = (&prefix[1..TAIL + 1], &prefix[..TAIL + 1]);
        assert_ne!(tail_hash(a), tail_hash(b));
    }
}
