//! Whether a Plan fits the datapath's maps. The live Plan and the next
//! one share each map (two slots), so a Plan may fill half of it: then any
//! Plan that fits can replace any other that fits. Said before anything is
//! loaded, by `zpr compile` and by the agent before it writes; `zpr check`
//! counts the same without building the Plan (see [`super::capacity`]).

use zpr_common::maps;

use super::Sizes;

/// The counts of a Plan that its fit depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Endpoint addresses (exact host entries), both families.
    pub host_entries: usize,
    /// LPM entries, both families.
    pub prefix_entries: usize,
    pub local_endpoints: usize,
    /// Policy entries whose local UID is that of an address of a local
    /// endpoint: the only ones a host writes.
    pub local_policy_entries: usize,
}

impl From<&Sizes> for Capacity {
    fn from(sizes: &Sizes) -> Capacity {
        Capacity {
            host_entries: sizes.hosts_v4 + sizes.hosts_v6,
            prefix_entries: sizes.prefixes_v4 + sizes.prefixes_v6,
            local_endpoints: sizes.local_endpoints,
            local_policy_entries: sizes.local_policy_entries,
        }
    }
}

/// Each limit `capacity` exceeds, as a sentence naming the table, the
/// count and the limit.
pub fn capacity_problems(capacity: &Capacity) -> Vec<String> {
    let half = |capacity: u32| capacity as usize / 2;
    [
        (
            "host entries (endpoint addresses)",
            capacity.host_entries,
            half(maps::HOSTS_MAX),
        ),
        (
            "prefix entries",
            capacity.prefix_entries,
            half(maps::PREFIXES_MAX),
        ),
        (
            "local endpoints",
            capacity.local_endpoints,
            half(maps::ENDPOINTS_MAX),
        ),
        (
            "policy entries for local endpoints",
            capacity.local_policy_entries,
            half(maps::POLICY_MAX),
        ),
    ]
    .into_iter()
    .filter(|&(_, count, limit)| count > limit)
    .map(|(table, count, limit)| {
        format!(
            "the Plan has {count} {table}; at most {limit} fit (half of the map: the live \
             Plan and the next one share it)"
        )
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_table_over_half_its_map_is_named() {
        let fits = Sizes {
            hosts_v4: 65_536,
            prefixes_v4: 65_536,
            ..Sizes::default()
        };
        assert!(capacity_problems(&Capacity::from(&fits)).is_empty());
        let over = Sizes {
            prefixes_v4: 200_000,
            prefixes_v6: 80_000,
            local_policy_entries: 2_000_000,
            ..Sizes::default()
        };
        let problems = capacity_problems(&Capacity::from(&over));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("280000 prefix entries; at most 262144 fit"));
        assert!(problems[1].contains("policy entries for local endpoints"));
    }

    /// Counting without the Plan gives the Plan's counts.
    #[test]
    fn the_capacity_of_the_inputs_is_that_of_their_plan() {
        for (statements, endpoints, seed) in [(300, 120, 1), (1_000, 250, 2), (50, 100, 3)] {
            let set = crate::synthetic::generate(statements, endpoints, seed);
            let plan = super::super::compile(&set.policies, &set.inventory);
            let capacity = super::super::capacity(&set.policies, &set.inventory);
            assert!(
                capacity.local_policy_entries > 0,
                "the generated sets have local entries"
            );
            assert_eq!(capacity, Capacity::from(&plan.sizes));
        }
    }
}
