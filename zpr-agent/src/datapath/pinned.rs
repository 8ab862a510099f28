//! The datapath as the agent runs it: maps and links pinned on bpffs, so
//! enforcement outlives the agent, and a restarted agent adopts what it
//! finds (or replaces it cleanly when it was written by an incompatible
//! version).

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use aya::{
    EbpfLoader,
    maps::{Array, MapData, MapError, MapInfo},
    programs::{
        SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        tc::SchedClassifierLink,
        xdp::XdpLink,
    },
};
use zpr_common::{
    config::{Config, LAYOUT_VERSION},
    maps,
};

use super::{
    ConntrackSize, Datapath, FromWorkloadHook,
    object::{ProgramSet, QuarantineDhcp, program},
};

/// Where zpr pins things: `<bpffs>/zpr/maps/<MAP>` and
/// `<bpffs>/zpr/links/<interface>:<end>` (bpffs refuses `.` in names,
/// interface names may hold one and never a `:`; see [`link_file_name`]).
#[derive(Clone, Debug)]
pub struct PinLayout {
    bpffs: PathBuf,
    root: PathBuf,
}

impl PinLayout {
    pub fn new(bpffs: &Path) -> PinLayout {
        PinLayout {
            bpffs: bpffs.to_owned(),
            root: bpffs.join("zpr"),
        }
    }

    /// The `--bpffs` directory the root is in.
    pub fn bpffs(&self) -> &Path {
        &self.bpffs
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A symlink to the owning agent's run directory (see `ownership`).
    pub(crate) fn owner(&self) -> PathBuf {
        self.root.join("owner")
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.root.join("maps").join(name)
    }

    fn links(&self) -> PathBuf {
        self.root.join("links")
    }

    fn link(&self, interface: &str, end: LinkEnd) -> PathBuf {
        self.links().join(link_file_name(interface, end))
    }
}

/// `<interface>:<end>`, with `%` and `.` percent-encoded.
fn link_file_name(interface: &str, end: LinkEnd) -> String {
    let encoded = interface.replace('%', "%25").replace('.', "%2e");
    format!("{encoded}:{}", end.suffix())
}

/// The interface and end a link pin's file name stands for.
fn parse_link_file_name(name: &str) -> Option<(String, LinkEnd)> {
    let (encoded, suffix) = name.rsplit_once(':')?;
    let end = LinkEnd::ALL
        .into_iter()
        .find(|end| end.suffix() == suffix)?;
    Some((encoded.replace("%2e", ".").replace("%25", "%"), end))
}

/// One attachment on a host-side vNIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LinkEnd {
    FromTcx,
    FromXdp,
    ToTcx,
}

impl LinkEnd {
    const ALL: [LinkEnd; 3] = [LinkEnd::FromTcx, LinkEnd::FromXdp, LinkEnd::ToTcx];

    pub fn suffix(self) -> &'static str {
        match self {
            LinkEnd::FromTcx => "from-tcx",
            LinkEnd::FromXdp => "from-xdp",
            LinkEnd::ToTcx => "to-tcx",
        }
    }

    fn from_workload(hook: FromWorkloadHook) -> LinkEnd {
        match hook {
            FromWorkloadHook::Tcx => LinkEnd::FromTcx,
            FromWorkloadHook::XdpGeneric | FromWorkloadHook::XdpNative => LinkEnd::FromXdp,
        }
    }

    /// The two ends a protected vNIC has with `hook`.
    pub fn both(hook: FromWorkloadHook) -> [LinkEnd; 2] {
        [LinkEnd::from_workload(hook), LinkEnd::ToTcx]
    }
}

/// Which programs a vNIC's links run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VnicPrograms {
    /// The policy's: a local endpoint's vNIC.
    Policy,
    /// The deny-all quarantine's: an unregistered vNIC `--quarantine` matches.
    Quarantine,
}

impl VnicPrograms {
    /// The program that runs at `end`.
    pub(super) fn at(self, end: LinkEnd) -> &'static str {
        match (self, end) {
            (VnicPrograms::Policy, LinkEnd::FromXdp) => maps::PROG_FROM_WORKLOAD_XDP,
            (VnicPrograms::Policy, LinkEnd::FromTcx) => maps::PROG_FROM_WORKLOAD_TC,
            (VnicPrograms::Policy, LinkEnd::ToTcx) => maps::PROG_TO_WORKLOAD_TC,
            (VnicPrograms::Quarantine, LinkEnd::FromXdp) => maps::PROG_QUARANTINE_FROM_XDP,
            (VnicPrograms::Quarantine, LinkEnd::FromTcx) => maps::PROG_QUARANTINE_FROM_TC,
            (VnicPrograms::Quarantine, LinkEnd::ToTcx) => maps::PROG_QUARANTINE_TO_TC,
        }
    }
}

/// What the agent found on bpffs when it started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Adoption {
    /// Nothing was pinned.
    Fresh,
    /// Pinned maps of this layout: enforcement, flows and counters continue.
    Adopted { generation: u32 },
    /// Pinned maps of another layout or size were unpinned; the pinned
    /// links kept running the old programs (and Plan) until the new ones
    /// took over.
    Replaced { why: String },
}

impl Datapath {
    /// Loads the programs over the pinned maps (creating and pinning them
    /// when absent).
    pub fn open_pinned(
        pins: &PinLayout,
        conntrack: ConntrackSize,
    ) -> anyhow::Result<(Datapath, Adoption)> {
        Datapath::open_pinned_with(
            pins,
            conntrack,
            QuarantineDhcp::default(),
            ProgramSet::Every,
        )
    }

    /// As [`Datapath::open_pinned`], with quarantine programs that pass
    /// DHCP or not, and only the programs of `programs`.
    pub fn open_pinned_with(
        pins: &PinLayout,
        conntrack: ConntrackSize,
        dhcp: QuarantineDhcp,
        programs: ProgramSet,
    ) -> anyhow::Result<(Datapath, Adoption)> {
        let mut adoption = match pinned_config(pins) {
            None => Adoption::Fresh,
            Some(Ok(config)) if config.layout == LAYOUT_VERSION => Adoption::Adopted {
                generation: config.generation,
            },
            Some(Ok(config)) => Adoption::Replaced {
                why: format!(
                    "pinned maps have layout {}, this zpr writes layout {LAYOUT_VERSION}",
                    config.layout
                ),
            },
            Some(Err(err)) => Adoption::Replaced {
                why: format!("pinned config unreadable: {err:#}"),
            },
        };
        if matches!(adoption, Adoption::Replaced { .. }) {
            remove_map_pins(pins)?;
        }
        let mut datapath = match load_over_pins(pins, conntrack, dhcp, programs) {
            Ok(datapath) => datapath,
            Err(err) if is_incompatible_pin(&err) => {
                adoption = Adoption::Replaced {
                    why: format!("{err:#}"),
                };
                remove_map_pins(pins)?;
                load_over_pins(pins, conntrack, dhcp, programs)?
            }
            Err(err) => return Err(err),
        };
        for name in maps::ALL {
            let id = MapInfo::from_pin(pins.map(name))
                .with_context(|| format!("reading the pinned {name}"))?
                .id();
            datapath.pinned_maps.insert(name, id);
        }
        Ok((datapath, adoption))
    }

    /// Puts back the pins of maps and links that someone removed or
    /// replaced (the agent's descriptors kept the objects, and with them
    /// enforcement, alive meanwhile). Returns what it put back.
    pub fn restore_pins(&mut self, pins: &PinLayout) -> anyhow::Result<Vec<PathBuf>> {
        let mut restored = Vec::new();
        for (name, id) in self.pinned_maps.clone() {
            let path = pins.map(name);
            if MapInfo::from_pin(&path).is_ok_and(|pinned| pinned.id() == id) {
                continue;
            }
            replace_pin(&path)?;
            self.map(name)?
                .pin(&path)
                .with_context(|| format!("pinning {}", path.display()))?;
            restored.push(path);
        }
        let paths: Vec<PathBuf> = self.links.keys().cloned().collect();
        for path in paths {
            let held = self.links[&path].info()?.id();
            if PinnedLink::from_pin(&path)
                .is_ok_and(|pinned| FdLink::from(pinned).info().is_ok_and(|i| i.id() == held))
            {
                continue;
            }
            replace_pin(&path)?;
            let link = self.links.remove(&path).expect("a held link");
            let pinned = link
                .pin(&path)
                .with_context(|| format!("pinning {}", path.display()))?;
            self.links.insert(path.clone(), pinned.into());
            restored.push(path);
        }
        Ok(restored)
    }

    /// Detaches zpr from `interface`: the links this process holds are
    /// let go, then their pins.
    pub fn detach(&mut self, pins: &PinLayout, interface: &str) -> anyhow::Result<()> {
        for end in LinkEnd::ALL {
            self.links.remove(&pins.link(interface, end));
        }
        detach_pinned(pins, interface)
    }

    /// Attaches both directions of `programs` to `interface` through
    /// pinned links: a link pinned before (by an earlier agent, or running
    /// the other programs: quarantine then policy, or back) is switched to
    /// these programs in one update (no packet sees no program); a missing
    /// one is created and pinned.
    pub fn attach_pinned(
        &mut self,
        pins: &PinLayout,
        interface: &str,
        hook: FromWorkloadHook,
        programs: VnicPrograms,
    ) -> anyhow::Result<()> {
        fs::create_dir_all(pins.links())?;
        for end in LinkEnd::both(hook) {
            let path = pins.link(interface, end);
            let attached = match PinnedLink::from_pin(&path) {
                Ok(pinned) => self
                    .attach_end(interface, end, programs, hook, Some(pinned.into()), &path)
                    .or_else(|_| {
                        // The pinned link outlived its interface (deleted and
                        // created again): replace it.
                        unpin_link(&path)?;
                        self.attach_end(interface, end, programs, hook, None, &path)
                    }),
                Err(_) => self.attach_end(interface, end, programs, hook, None, &path),
            };
            attached.with_context(|| format!("attaching {} to {interface}", end.suffix()))?;
        }
        // Only once this hook's program runs: a vNIC whose hook changed
        // keeps the old one until then (both enforce the same Plan).
        let from = LinkEnd::from_workload(hook);
        for stale in [LinkEnd::FromTcx, LinkEnd::FromXdp] {
            if stale != from {
                let path = pins.link(interface, stale);
                self.links.remove(&path);
                unpin_link(&path)?;
            }
        }
        Ok(())
    }

    fn attach_end(
        &mut self,
        interface: &str,
        end: LinkEnd,
        programs: VnicPrograms,
        hook: FromWorkloadHook,
        pinned: Option<FdLink>,
        path: &Path,
    ) -> anyhow::Result<()> {
        let name = std::ffi::CString::new(interface)?;
        let program_name = programs.at(end);
        let link: FdLink = match end {
            LinkEnd::FromXdp => {
                let xdp: &mut Xdp = program(&mut self.ebpf, program_name)?.try_into()?;
                let id = match pinned {
                    Some(link) => xdp.attach_to_link(XdpLink::try_from(link)?)?,
                    None => {
                        let mode = if hook == FromWorkloadHook::XdpNative {
                            XdpMode::Driver
                        } else {
                            XdpMode::Skb
                        };
                        xdp.attach(name.as_c_str(), mode)?
                    }
                };
                xdp.take_link(id)?.try_into()?
            }
            LinkEnd::FromTcx | LinkEnd::ToTcx => {
                let attach = if end == LinkEnd::ToTcx {
                    TcAttachType::Egress
                } else {
                    TcAttachType::Ingress
                };
                let tc: &mut SchedClassifier = program(&mut self.ebpf, program_name)?.try_into()?;
                let id = match pinned {
                    Some(link) => tc.attach_to_link(SchedClassifierLink::try_from(link)?)?,
                    None => tc.attach(name.as_c_str(), attach)?,
                };
                tc.take_link(id)?.try_into()?
            }
        };
        let link = if path.exists() {
            link
        } else {
            link.pin(path)
                .with_context(|| format!("pinning {}", path.display()))?
                .into()
        };
        // Held as well as pinned: a removed pin then costs no enforcement
        // (see `restore_pins`), and the pin keeps it when the agent ends.
        self.links.insert(path.to_owned(), link);
        Ok(())
    }
}

/// The interfaces that have pinned zpr links.
pub fn pinned_interfaces(pins: &PinLayout) -> Vec<String> {
    let mut interfaces: Vec<String> = fs::read_dir(pins.links())
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| parse_link_file_name(&entry.file_name().to_string_lossy()))
        .map(|(interface, _)| interface)
        .collect();
    interfaces.sort();
    interfaces.dedup();
    interfaces
}

/// Detaches zpr from `interface` (its pinned links go, and with them the programs).
pub fn detach_pinned(pins: &PinLayout, interface: &str) -> anyhow::Result<()> {
    for end in LinkEnd::ALL {
        unpin_link(&pins.link(interface, end))?;
    }
    Ok(())
}

/// What `remove_all` took away.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub interfaces: Vec<String>,
    pub maps: usize,
}

/// Detaches every pinned link and removes every pin and the pin directory.
pub fn remove_all(pins: &PinLayout) -> anyhow::Result<Removed> {
    let removed = remove_pinned(pins)?;
    if pins.root().exists() {
        fs::remove_dir_all(pins.root())
            .with_context(|| format!("removing {}", pins.root().display()))?;
    }
    Ok(removed)
}

/// Detaches every pinned link and removes every map pin; the pin root
/// (which its owner holds locked) stays.
fn remove_pinned(pins: &PinLayout) -> anyhow::Result<Removed> {
    let interfaces = pinned_interfaces(pins);
    for interface in &interfaces {
        detach_pinned(pins, interface)?;
    }
    Ok(Removed {
        interfaces,
        maps: remove_map_pins(pins)?,
    })
}

/// Removes every map pin, and nothing else: the pinned links keep running
/// the programs they run, with the maps those programs hold, until they
/// are switched to new programs (so replacing the maps opens no gap).
fn remove_map_pins(pins: &PinLayout) -> anyhow::Result<usize> {
    let mut removed = 0;
    for name in maps::ALL {
        let path = pins.map(name);
        if path.exists() {
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn unpin_link(path: &Path) -> anyhow::Result<()> {
    if let Ok(link) = PinnedLink::from_pin(path) {
        // The last reference goes with the pin: the link detaches.
        drop(
            link.unpin()
                .with_context(|| format!("unpinning {}", path.display()))?,
        );
    } else if path.exists() {
        fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

/// Clears the way for a pin at `path`: removes whatever is there (a pin
/// of another object), and creates its directory when it went.
fn replace_pin(path: &Path) -> anyhow::Result<()> {
    if fs::symlink_metadata(path).is_ok() {
        fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    }
    if let Some(directory) = path.parent() {
        fs::create_dir_all(directory)
            .with_context(|| format!("creating {}", directory.display()))?;
    }
    Ok(())
}

fn pinned_config(pins: &PinLayout) -> Option<anyhow::Result<Config>> {
    let path = pins.map(maps::CONFIG);
    if !path.exists() {
        return None;
    }
    Some((|| {
        let map = MapData::from_pin(&path)?;
        let config: Array<_, Config> = Array::try_from(aya::maps::Map::Array(map))?;
        Ok(config.get(&0, 0)?)
    })())
}

fn load_over_pins(
    pins: &PinLayout,
    conntrack: ConntrackSize,
    dhcp: QuarantineDhcp,
    programs: ProgramSet,
) -> anyhow::Result<Datapath> {
    fs::create_dir_all(pins.root().join("maps"))
        .with_context(|| format!("creating {}", pins.root().display()))?;
    let paths: Vec<(&str, PathBuf)> = maps::ALL
        .iter()
        .map(|name| (*name, pins.map(name)))
        .collect();
    let mut loader = EbpfLoader::new();
    conntrack.size(&mut loader);
    dhcp.set(&mut loader);
    for (name, path) in &paths {
        loader.map_pin_path(name, path.as_path());
    }
    Datapath::load_with(&mut loader, programs)
}

fn is_incompatible_pin(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<MapError>()
            .is_some_and(|e| matches!(e, MapError::IncompatiblePinnedMap { .. }))
            || cause.downcast_ref::<aya::EbpfError>().is_some_and(|e| {
                matches!(
                    e,
                    aya::EbpfError::MapError(MapError::IncompatiblePinnedMap { .. })
                )
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_file_names_round_trip_and_avoid_dots() {
        for interface in ["zpr-lb", "eth0.100", "we%ird.0"] {
            for end in LinkEnd::ALL {
                let name = link_file_name(interface, end);
                assert!(!name.contains('.'), "{name}");
                assert_eq!(
                    parse_link_file_name(&name),
                    Some((interface.to_owned(), end))
                );
            }
        }
        assert_eq!(parse_link_file_name("stray-file"), None);
    }
}
