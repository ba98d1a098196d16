//! Hash maps for the engine's hot tables: keyed by what every call carries
//! (message fingerprints, event kinds), so hashing is paid on
//! every call. foldhash in place of the standard SipHash, seeded at random
//! per process as the standard maps are.

/// A hash set with foldhash.
pub(crate) type Set<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// A hash map with foldhash.
pub(crate) type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
