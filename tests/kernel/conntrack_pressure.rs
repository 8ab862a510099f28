//! Conntrack under pressure: a flood of new flows from spoofed sources
//! (more than both tables hold) cannot push established flows out, and a
//! flow whose entry is gone anyway is picked up again from either side.
//! Real TCP and UDP between the three-tier hosts; the agent's tables are
//! sized small so the flood is quick.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::Context as _;
use aya::maps::{HashMap, Map, MapData};
use serde_json::Value;
use zpr_agent::datapath::PinLayout;
use zpr_common::{
    conntrack::{FlowKey, FlowState},
    maps,
};
use zpr_tests::{
    Netns,
    agent::{AgentProcess, zpr_binary},
    flood::syn_flood,
    frames::{PROTO_TCP, PROTO_UDP},
    site::Inputs,
    three_tier::HOSTS,
    topology::Topology,
    traffic::{EchoServer, TIMEOUT, tcp_exchange},
};

/// App servers may also reach the database over UDP.
const UDP_TO_DB: &str = "allow ocvtc002.apps:server endpoints in ocvtc002.networks:front-end VCN to connect to ocvtc002.db:customer-db endpoints with protocol='udp/1521' in ocvtc002.networks:back-end VCN";
const ESTABLISHED_ENTRIES: u32 = 4096;
/// More new flows than both tables hold together.
const FLOOD: u32 = 4 * ESTABLISHED_ENTRIES;

struct Pressure {
    topology: Topology,
    /// app-1 listens on tcp/80, which only the denied probe tries.
    _probed: EchoServer,
    _inputs: Inputs,
    agent: AgentProcess,
}

impl Pressure {
    fn start() -> anyhow::Result<Pressure> {
        let topology = Topology::new(&HOSTS)?;
        let probed = EchoServer::start(&topology.host("app-1").netns, 80)?;
        let inputs = Inputs::new()?;
        inputs.write_policy(&format!("{}{UDP_TO_DB}\n", inputs.original_policy()))?;
        let mut agent = AgentProcess::prepare(
            &zpr_binary(),
            &topology.router,
            &inputs.inventory(),
            &[inputs.policy()],
            &inputs.dir,
        );
        agent.arguments.extend([
            "--conntrack-entries".to_owned(),
            ESTABLISHED_ENTRIES.to_string(),
        ]);
        agent.spawn()?;
        agent.wait_for_generation(1)?;
        Ok(Pressure {
            topology,
            _probed: probed,
            _inputs: inputs,
            agent,
        })
    }

    fn netns(&self, host: &str) -> &Netns {
        &self.topology.host(host).netns
    }

    fn address(&self, host: &str) -> Ipv4Addr {
        self.topology.host(host).address
    }

    fn status(&self) -> anyhow::Result<Value> {
        let (code, report) = self.agent.status_report()?;
        anyhow::ensure!(code == 0, "zpr status exited {code}: {report:#}");
        Ok(report)
    }

    /// Packets counted as picked up, both directions.
    fn picked_up(&self) -> anyhow::Result<u64> {
        let report = self.status()?;
        let row = report["counters"]
            .as_array()
            .context("no counters")?
            .iter()
            .find(|row| row["reason"] == "picked-up")
            .context("no picked-up counter")?;
        Ok(row["from_workload"].as_u64().unwrap_or(0) + row["to_workload"].as_u64().unwrap_or(0))
    }

    /// The flows in the established table, as (protocol, local port,
    /// remote port) from each vNIC's side.
    fn established(&self) -> anyhow::Result<Vec<(u8, u16, u16)>> {
        let pins = PinLayout::new(&self.agent.bpffs);
        let map = Map::LruHashMap(MapData::from_pin(pins.map(maps::CONNTRACK))?);
        let flows: HashMap<_, FlowKey, FlowState> = HashMap::try_from(map)?;
        Ok(flows
            .keys()
            .filter_map(Result::ok)
            .map(|key| (key.protocol, key.local_port, key.remote_port))
            .collect())
    }

    /// Forgets every tracked flow behind the agent's back, as evictions
    /// would.
    fn lose_every_flow(&self) -> anyhow::Result<usize> {
        let pins = PinLayout::new(&self.agent.bpffs);
        let mut lost = 0;
        for (name, wrap) in [
            (maps::CONNTRACK, Map::HashMap as fn(MapData) -> Map),
            (maps::CONNTRACK_OPENING, Map::LruHashMap),
        ] {
            let map = wrap(MapData::from_pin(pins.map(name))?);
            let mut flows: HashMap<_, FlowKey, FlowState> = HashMap::try_from(map)?;
            let keys: Vec<FlowKey> = flows.keys().filter_map(Result::ok).collect();
            for key in keys {
                lost += usize::from(flows.remove(&key).is_ok());
            }
        }
        Ok(lost)
    }
}

/// A TCP connection app-1 -> db:1521 whose two ends the test drives.
struct Connection {
    client: TcpStream,
    server: TcpStream,
    _listener: TcpListener,
}

impl Connection {
    fn open(pressure: &Pressure) -> anyhow::Result<Connection> {
        let db = pressure.address("db");
        let listener = pressure
            .netns("db")
            .enter(|| TcpListener::bind((db, 1521)))??;
        let client = pressure
            .netns("app-1")
            .enter(|| TcpStream::connect_timeout(&SocketAddr::from((db, 1521)), TIMEOUT))??;
        let (server, _) = listener.accept()?;
        for stream in [&client, &server] {
            stream.set_read_timeout(Some(TIMEOUT))?;
        }
        Ok(Connection {
            client,
            server,
            _listener: listener,
        })
    }

    /// The database speaks first, then the app server answers.
    fn both_ways(&mut self, what: &str) -> anyhow::Result<()> {
        send(&mut self.server, &mut self.client, b"from db")
            .with_context(|| format!("{what}: db -> app-1 on the open TCP connection"))?;
        send(&mut self.client, &mut self.server, b"from app-1")
            .with_context(|| format!("{what}: app-1 -> db on the open TCP connection"))
    }
}

fn send(from: &mut TcpStream, to: &mut TcpStream, message: &[u8]) -> anyhow::Result<()> {
    from.write_all(message)?;
    let mut received = vec![0; message.len()];
    to.read_exact(&mut received)?;
    anyhow::ensure!(received == message, "the bytes differ");
    Ok(())
}

/// A UDP exchange app-1 <-> db:1521 on one pair of sockets.
struct Exchange {
    app: UdpSocket,
    db: UdpSocket,
    app_address: SocketAddr,
    db_address: SocketAddr,
}

impl Exchange {
    fn open(pressure: &Pressure) -> anyhow::Result<Exchange> {
        let db_address = SocketAddr::from((pressure.address("db"), 1521));
        let db = pressure
            .netns("db")
            .enter(|| UdpSocket::bind(db_address))??;
        let app = pressure
            .netns("app-1")
            .enter(|| UdpSocket::bind((pressure.address("app-1"), 0)))??;
        for socket in [&app, &db] {
            socket.set_read_timeout(Some(TIMEOUT))?;
        }
        let app_address = app.local_addr()?;
        Ok(Exchange {
            app,
            db,
            app_address,
            db_address,
        })
    }

    fn app_to_db(&self, what: &str) -> anyhow::Result<()> {
        self.app.send_to(b"query", self.db_address)?;
        receive(&self.db, b"query").with_context(|| format!("{what}: app-1 -> db over UDP"))
    }

    fn db_to_app(&self, what: &str) -> anyhow::Result<()> {
        self.db.send_to(b"answer", self.app_address)?;
        receive(&self.app, b"answer").with_context(|| format!("{what}: db -> app-1 over UDP"))
    }
}

fn receive(socket: &UdpSocket, expected: &[u8]) -> anyhow::Result<()> {
    let mut buffer = [0; 64];
    let (len, _) = socket.recv_from(&mut buffer)?;
    anyhow::ensure!(&buffer[..len] == expected, "the datagram differs");
    Ok(())
}

#[test]
fn established_flows_outlive_a_flood_of_more_new_flows_than_the_tables_hold() -> anyhow::Result<()>
{
    let pressure = Pressure::start()?;
    let mut connection = Connection::open(&pressure)?;
    connection.both_ways("before the flood")?;
    let exchange = Exchange::open(&pressure)?;
    exchange.app_to_db("before the flood")?;
    exchange.db_to_app("before the flood")?;

    // The load balancer listens, so it answers every spoofed SYN.
    let lb = pressure.address("lb");
    let _listener = pressure
        .netns("lb")
        .enter(|| TcpListener::bind((lb, 80)))??;
    let sent = syn_flood(pressure.netns("internet"), lb, 80, FLOOD)?;
    assert_eq!(sent, FLOOD, "the flood was not sent whole");

    let report = pressure.status()?;
    let conntrack = &report["conntrack"];
    let opening_capacity = conntrack["opening"]["capacity"].as_u64().unwrap();
    let evicted = conntrack["opening_evicted"].as_u64().unwrap();
    eprintln!("after {FLOOD} spoofed SYNs: {conntrack:#}");
    assert!(
        evicted >= u64::from(FLOOD) - opening_capacity,
        "the flood overflowed the opening table, so it evicted: {conntrack:#}"
    );
    assert!(
        conntrack["established"]["entries"].as_u64().unwrap() < 64,
        "flows never answered are not established: {conntrack:#}"
    );
    assert_eq!(conntrack["established_evicted"], 0, "{conntrack:#}");
    // Both flows are still in the established table, seen from each end:
    // they survived (rather than being picked up again afterwards).
    let established = pressure.established()?;
    let app_port = |protocol| match protocol {
        PROTO_TCP => connection.client.local_addr().map(|a| a.port()),
        _ => Ok(exchange.app_address.port()),
    };
    for protocol in [PROTO_TCP, PROTO_UDP] {
        let app = app_port(protocol)?;
        for side in [(protocol, app, 1521), (protocol, 1521, app)] {
            assert!(
                established.contains(&side),
                "{side:?} is not among the established flows {established:?}"
            );
        }
    }

    // The database speaks first on both: with the entries gone, nothing
    // would let its packets toward app-1 through (UDP is not picked up).
    connection.both_ways("after the flood")?;
    exchange.db_to_app("after the flood")?;
    exchange.app_to_db("after the flood")?;
    Ok(())
}

#[test]
fn a_tcp_flow_whose_entry_is_lost_is_picked_up_from_either_side() -> anyhow::Result<()> {
    let pressure = Pressure::start()?;
    let mut connection = Connection::open(&pressure)?;
    connection.both_ways("before")?;

    // The side no statement lets open the flow speaks first.
    let lost = pressure.lose_every_flow()?;
    assert!(lost >= 2, "both vNICs tracked the flow: {lost} entries");
    let before = pressure.picked_up()?;
    connection.both_ways("after losing the entries, db first")?;
    assert!(
        pressure.picked_up()? > before,
        "db's packet was picked up (allowed the other way round)"
    );

    // And the side that opened it.
    pressure.lose_every_flow()?;
    send(
        &mut connection.client,
        &mut connection.server,
        b"app-1 first",
    )
    .context("after losing the entries, app-1 first")?;
    connection.both_ways("after the pick-up")?;

    Ok(())
}

#[test]
fn resizing_the_tables_at_a_restart_opens_no_gap_and_keeps_tcp_flows() -> anyhow::Result<()> {
    let mut pressure = Pressure::start()?;
    let mut connection = Connection::open(&pressure)?;
    connection.both_ways("before")?;
    let stop = AtomicBool::new(false);
    let internet = &pressure.topology.host("internet").netns;
    let app = pressure.topology.host("app-1").address;
    let (through, tries) = std::thread::scope(|scope| -> anyhow::Result<(usize, usize)> {
        let probe = scope.spawn(|| {
            let (mut through, mut tries) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                through += usize::from(tcp_exchange(internet, app, 80).is_ok());
                tries += 1;
            }
            (through, tries)
        });
        let restarted = (|| -> anyhow::Result<()> {
            pressure.agent.terminate()?;
            let size = pressure.agent.arguments.last_mut().context("no size")?;
            *size = (2 * ESTABLISHED_ENTRIES).to_string();
            pressure.agent.spawn()?;
            pressure.agent.wait_for("the tables replaced", |status| {
                status["adoption"]
                    .as_str()
                    .is_some_and(|adoption| adoption.starts_with("replaced"))
                    && status["generation"].as_u64().unwrap_or(0) >= 1
            })?;
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        let probed = probe.join().expect("the probe panicked");
        restarted?;
        Ok(probed)
    })?;
    assert!(tries > 0, "the denied path was probed");
    assert_eq!(
        through, 0,
        "denied connections got through in {tries} tries"
    );
    let report = pressure.status()?;
    assert_eq!(
        report["conntrack"]["established"]["capacity"],
        2 * ESTABLISHED_ENTRIES,
        "{:#}",
        report["conntrack"]
    );
    connection.both_ways("after the tables were replaced")?;
    assert!(
        pressure.picked_up()? > 0,
        "the connection was picked up again"
    );
    Ok(())
}
