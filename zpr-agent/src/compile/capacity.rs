//! Whether a Plan fits the datapath's maps. The live Plan and the next
//! one share each map (two slots), so a Plan may fill half of it: then any
//! Plan that fits can replace any other that fits. Said before anything is
//! loaded, by `zpr compile` and by the agent before it writes.

use zpr_common::maps;

use super::Sizes;

/// Each limit `sizes` exceeds, as a sentence naming the table, the count
/// and the limit.
pub fn capacity_problems(sizes: &Sizes) -> Vec<String> {
    let half = |capacity: u32| capacity as usize / 2;
    [
        (
            "host entries (endpoint addresses)",
            sizes.hosts_v4 + sizes.hosts_v6,
            half(maps::HOSTS_MAX),
        ),
        (
            "prefix entries",
            sizes.prefixes_v4 + sizes.prefixes_v6,
            half(maps::PREFIXES_MAX),
        ),
        (
            "local endpoints",
            sizes.local_endpoints,
            half(maps::ENDPOINTS_MAX),
        ),
        (
            "policy entries for local endpoints",
            sizes.local_policy_entries,
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
        assert!(capacity_problems(&fits).is_empty());
        let over = Sizes {
            prefixes_v4: 200_000,
            prefixes_v6: 80_000,
            local_policy_entries: 2_000_000,
            ..Sizes::default()
        };
        let problems = capacity_problems(&over);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("280000 prefix entries; at most 262144 fit"));
        assert!(problems[1].contains("policy entries for local endpoints"));
    }
}
