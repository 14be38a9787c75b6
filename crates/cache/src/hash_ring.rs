//! Which Redis node holds a key: a consistent-hash ring with virtual nodes.
//!
//! Each node is placed on a 64-bit ring at [`VIRTUAL_NODES`] points (hashes of
//! `"<node>#<n>"`); a key belongs to the first point at or after its own hash. Adding or
//! removing one of N nodes then moves only the keys between its points and their
//! predecessors — about 1/N of them — instead of nearly all, as `hash % N` would. Many
//! points per node even out the share each node gets. Hashes are SHA-256 truncated to 64
//! bits: stable across processes, releases and platforms, which `std`'s hasher is not.

use sha2::{Digest, Sha256};

/// Points per node on the ring. 160 keeps each node's share within a few percent of
/// 1/N for small N (the figure ketama popularised).
pub const VIRTUAL_NODES: usize = 160;

/// Nodes (by index into the list given to [`HashRing::new`]) placed on a ring.
#[derive(Debug, Clone)]
pub struct HashRing {
    /// (point, node index), sorted by point.
    points: Vec<(u64, usize)>,
    nodes: usize,
}

impl HashRing {
    /// A ring over `nodes`, each named by a stable identifier (its URL, say): the names,
    /// not the order, decide where a node's points fall.
    pub fn new<S: AsRef<str>>(nodes: &[S]) -> Self {
        let mut points: Vec<(u64, usize)> = nodes
            .iter()
            .enumerate()
            .flat_map(|(index, name)| {
                (0..VIRTUAL_NODES)
                    .map(move |n| (hash64(format!("{}#{n}", name.as_ref()).as_bytes()), index))
            })
            .collect();
        points.sort_unstable();
        Self {
            points,
            nodes: nodes.len(),
        }
    }

    /// How many nodes the ring has.
    pub fn len(&self) -> usize {
        self.nodes
    }

    pub fn is_empty(&self) -> bool {
        self.nodes == 0
    }

    /// The index of the node that holds `key`; `None` on an empty ring.
    pub fn node_for(&self, key: &[u8]) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let hash = hash64(key);
        let at = self.points.partition_point(|(point, _)| *point < hash);
        // Past the last point, the ring wraps to the first.
        let (_, node) = self.points[at % self.points.len()];
        Some(node)
    }
}

fn hash64(bytes: &[u8]) -> u64 {
    let digest = Sha256::digest(bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners(ring: &HashRing, names: &[&str], keys: usize) -> Vec<String> {
        (0..keys)
            .map(|n| {
                let node = ring.node_for(format!("product:{n}").as_bytes()).unwrap();
                names[node].to_owned()
            })
            .collect()
    }

    #[test]
    fn adding_a_fourth_node_moves_about_a_quarter_of_the_keys_and_only_to_it() {
        let three = ["redis://a", "redis://b", "redis://c"];
        let four = ["redis://a", "redis://b", "redis://c", "redis://d"];
        let before = owners(&HashRing::new(&three), &three, 20_000);
        let after = owners(&HashRing::new(&four), &four, 20_000);
        let moved: Vec<_> = before.iter().zip(&after).filter(|(b, a)| b != a).collect();
        let share = moved.len() as f64 / before.len() as f64;
        assert!(
            (0.18..0.32).contains(&share),
            "moved {share:.3} of the keys"
        );
        assert!(
            moved.iter().all(|(_, to)| to.as_str() == "redis://d"),
            "keys move only to the new node"
        );
    }

    #[test]
    fn removing_a_node_moves_only_its_own_keys() {
        let four = ["redis://a", "redis://b", "redis://c", "redis://d"];
        let three = ["redis://a", "redis://c", "redis://d"];
        let before = owners(&HashRing::new(&four), &four, 20_000);
        let after = owners(&HashRing::new(&three), &three, 20_000);
        for (b, a) in before.iter().zip(&after) {
            if b != "redis://b" {
                assert_eq!(b, a, "a key of a surviving node stayed put");
            }
        }
        let share = before.iter().filter(|b| *b == "redis://b").count() as f64 / 20_000.0;
        assert!(
            (0.18..0.32).contains(&share),
            "the removed node held {share:.3}"
        );
    }

    #[test]
    fn every_node_gets_a_fair_share() {
        let names = ["redis://a", "redis://b", "redis://c"];
        let placed = owners(&HashRing::new(&names), &names, 30_000);
        for name in names {
            let share = placed.iter().filter(|owner| *owner == name).count() as f64 / 30_000.0;
            assert!((0.25..0.42).contains(&share), "{name} holds {share:.3}");
        }
    }

    #[test]
    fn the_order_of_the_node_list_does_not_matter() {
        let forward = HashRing::new(&["redis://a", "redis://b"]);
        let backward = HashRing::new(&["redis://b", "redis://a"]);
        for n in 0..1_000 {
            let key = format!("k{n}");
            let f = forward.node_for(key.as_bytes()).unwrap();
            let b = backward.node_for(key.as_bytes()).unwrap();
            assert_eq!(f, 1 - b, "same node whatever its index");
        }
    }

    #[test]
    fn an_empty_ring_has_no_owner() {
        assert_eq!(HashRing::new::<&str>(&[]).node_for(b"k"), None);
    }
}
