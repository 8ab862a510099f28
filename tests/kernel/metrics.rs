//! The agent's Prometheus metrics on the three-tier site: every series is
//! there at 0 before any traffic (scraped directly), and a real Prometheus
//! scraping the agent sees what real allowed and denied traffic caused;
//! idle and slow clients do not delay a scrape.
//! Needs root and Debian's prometheus package.

use std::{
    io::Write as _,
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use zpr_common::{Direction, counters::Reason};
use zpr_tests::{
    http::{free_port, http_get},
    prometheus::Prometheus,
    site::Site,
    three_tier::PATHS,
};

/// The site, its agent serving metrics on a free port of the router's
/// namespace (where the agent runs), and that address.
fn site_with_metrics() -> anyhow::Result<(Site, SocketAddr)> {
    let mut metrics = None;
    let site = Site::start_with(|network, agent| {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port(network.router())?));
        agent.arguments.push("--metrics-address".to_owned());
        agent.arguments.push(address.to_string());
        metrics = Some(address);
        Ok(())
    })?;
    Ok((site, metrics.unwrap()))
}

#[test]
fn every_series_exists_at_zero_before_traffic() -> anyhow::Result<()> {
    let (site, metrics) = site_with_metrics()?;
    let router = site.network.router();
    let (status, body) = http_get(router, metrics, "/metrics")?;
    assert_eq!(status, 200, "{body}");
    let value = |series: &str| -> String {
        body.lines()
            .find_map(|line| {
                line.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .unwrap_or_else(|| panic!("no series {series} in:\n{body}"))
            .to_owned()
    };
    for direction in Direction::ALL {
        for reason in Reason::ALL {
            let verdict = if reason.is_drop() { "drop" } else { "pass" };
            for metric in ["zpr_packets_total", "zpr_bytes_total"] {
                let series = format!(
                    "{metric}{{direction=\"{}\",reason=\"{}\",verdict=\"{verdict}\"}}",
                    direction.name(),
                    reason.name()
                );
                assert_eq!(value(&series), "0", "{series}");
            }
        }
        for verdict in ["allowed", "dropped", "audited"] {
            let series = format!(
                "zpr_new_flows_total{{direction=\"{}\",verdict=\"{verdict}\"}}",
                direction.name()
            );
            assert_eq!(value(&series), "0", "{series}");
        }
    }
    for table in ["established", "opening"] {
        assert_eq!(
            value(&format!(
                "zpr_conntrack_evictions_total{{table=\"{table}\"}}"
            )),
            "0"
        );
        assert_eq!(
            value(&format!("zpr_conntrack_live_flows{{table=\"{table}\"}}")),
            "0"
        );
    }
    for series in [
        "zpr_policy_reloads_total{outcome=\"failed\"}",
        "zpr_policy_reloads_total{outcome=\"held-back\"}",
        "zpr_conntrack_pickups_total",
        "zpr_conntrack_confirmations_refused_total",
        "zpr_events_lost_total",
        "zpr_events_rate_limited_total",
        "zpr_repairs_total",
        "zpr_health{state=\"degraded\"}",
        "zpr_health{state=\"not-enforcing\"}",
    ] {
        assert_eq!(value(series), "0", "{series}");
    }
    assert_eq!(value("zpr_policy_reloads_total{outcome=\"applied\"}"), "1");
    assert_eq!(value("zpr_policy_apply_duration_seconds_count"), "1");
    assert_eq!(value("zpr_health{state=\"protected\"}"), "1");
    assert_eq!(value("zpr_policy_generation"), "1");
    // What zpr status reports, the metrics report.
    let report = site.status_json()?;
    let attached = report["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|endpoint| endpoint["attached"] == true)
        .count();
    assert_eq!(value("zpr_endpoints_attached"), attached.to_string());
    assert_eq!(
        value("zpr_policy_statements"),
        report["agent"]["statements"].to_string()
    );
    for map in report["maps"].as_array().unwrap() {
        let name = map["map"].as_str().unwrap();
        assert_eq!(
            value(&format!("zpr_map_entries_limit{{map=\"{name}\"}}")),
            map["capacity"].to_string()
        );
    }
    assert!(body.contains("zpr_build_info{version=\""), "{body}");
    // Each local endpoint has its series (up to --metrics-endpoints).
    for endpoint in report["endpoints"].as_array().unwrap() {
        let name = endpoint["name"].as_str().unwrap();
        let attached = format!("zpr_endpoint_attached{{endpoint=\"{name}\"");
        assert!(body.contains(&attached), "no {attached} in:\n{body}");
    }
    Ok(())
}

#[test]
fn prometheus_sees_what_the_traffic_caused() -> anyhow::Result<()> {
    let (site, metrics) = site_with_metrics()?;
    let router = site.network.router();
    let prometheus = Prometheus::start(router, metrics)?;
    prometheus.wait_for(router, "up{job=\"zpr\"}", |up| up == 1.0)?;
    let dropped_no_policy = "sum(zpr_packets_total{reason=\"no-policy\",verdict=\"drop\"})";
    let flows_allowed = "sum(zpr_new_flows_total{verdict=\"allowed\"})";
    let flows_dropped = "sum(zpr_new_flows_total{verdict=\"dropped\"})";
    let before_drops = prometheus.wait_for(router, dropped_no_policy, |_| true)?;
    let before_allowed = prometheus.wait_for(router, flows_allowed, |_| true)?;
    let before_dropped = prometheus.wait_for(router, flows_dropped, |_| true)?;

    let (mut allowed, mut denied) = (0.0, 0.0);
    for (from, to, port, allowed_by_example) in PATHS {
        assert_eq!(
            site.works(from, to, port),
            allowed_by_example,
            "{from} -> {to}:{port}"
        );
        if allowed_by_example {
            allowed += 1.0;
        } else {
            denied += 1.0;
        }
    }

    // Each denied attempt is dropped at least once (its SYN; retries count
    // again); each allowed connection is a new flow at least once.
    prometheus.wait_for(router, dropped_no_policy, |now| {
        now >= before_drops + denied
    })?;
    prometheus.wait_for(router, flows_dropped, |now| now >= before_dropped + denied)?;
    prometheus.wait_for(router, flows_allowed, |now| now >= before_allowed + allowed)?;
    // Nothing else was dropped: every drop was under no-policy.
    let all_drops =
        prometheus.wait_for(router, "sum(zpr_packets_total{verdict=\"drop\"})", |_| true)?;
    let no_policy = prometheus.wait_for(router, dropped_no_policy, |_| true)?;
    assert_eq!(all_drops, no_policy);
    prometheus.wait_for(
        router,
        "sum(zpr_conntrack_live_flows{table=\"established\"})",
        |live| live >= 1.0,
    )?;
    prometheus.wait_for(router, "zpr_health{state=\"protected\"}", |v| v == 1.0)?;
    prometheus.wait_for(
        router,
        "zpr_policy_reloads_total{outcome=\"applied\"}",
        |v| v == 1.0,
    )?;
    prometheus.wait_for(router, "count(zpr_build_info)", |v| v == 1.0)?;
    prometheus.wait_for(
        router,
        "histogram_quantile(0.5, zpr_policy_apply_duration_seconds_bucket)",
        |seconds| seconds > 0.0 && seconds < 10.0,
    )?;
    Ok(())
}

#[test]
fn a_taken_port_costs_the_metrics_not_enforcement() -> anyhow::Result<()> {
    let mut taken = None;
    let site = Site::start_with(|network, agent| {
        let listener = network
            .router()
            .enter(|| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))??;
        agent.arguments.push("--metrics-address".to_owned());
        agent.arguments.push(listener.local_addr()?.to_string());
        taken = Some(listener);
        Ok(())
    })?;
    // Enforcing as ever...
    site.assert_paths_as_in_example();
    // ...and saying loudly what it does not do.
    let warnings = site.agent.status().unwrap()["warnings"].to_string();
    assert!(warnings.contains("metrics are not served"), "{warnings}");
    let (_, report) = site.agent.status_report()?;
    assert!(
        report["agent"]["warnings"]
            .to_string()
            .contains("metrics are not served"),
        "{report:#}"
    );
    assert!(
        site.agent.log().contains("metrics are not served"),
        "{}",
        site.agent.log()
    );
    drop(taken);
    Ok(())
}

#[test]
fn idle_and_slow_clients_do_not_delay_a_scrape() -> anyhow::Result<()> {
    let (site, metrics) = site_with_metrics()?;
    let router = site.network.router();
    // More idle connections than the endpoint serves at once, and a few
    // that send a byte a second and never finish their request.
    let (idle, slow) = router.enter(|| {
        let open = |_| TcpStream::connect_timeout(&metrics, Duration::from_secs(5)).ok();
        let idle: Vec<TcpStream> = (0..100).filter_map(open).collect();
        let slow: Vec<TcpStream> = (0..4).filter_map(open).collect();
        (idle, slow)
    })?;
    assert!(idle.len() >= 64, "the idle clients could not connect");
    let drip = std::thread::spawn(move || {
        for _ in 0..8 {
            for mut stream in &slow {
                let _ = stream.write_all(b"G");
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    for _ in 0..3 {
        let asked = Instant::now();
        let (status, body) = http_get(router, metrics, "/metrics")?;
        assert_eq!(status, 200, "{body}");
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "a scrape waited {:?} behind idle and slow clients",
            asked.elapsed()
        );
    }
    drop(idle);
    drip.join().unwrap();
    Ok(())
}
