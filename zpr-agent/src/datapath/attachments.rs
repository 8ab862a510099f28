//! Where the kernel runs zpr's programs, read from the kernel's own lists
//! of links and programs: not from pins (which anyone can delete) nor from
//! the agent's memory. A program is zpr's when it uses the pin root's
//! config map, so the answer is about this pin root only.

use std::{
    collections::{BTreeMap, BTreeSet},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use anyhow::Context as _;
use aya::{maps::MapInfo, programs::loaded_programs};
use zpr_common::maps;

use super::{
    PinLayout,
    pinned::LinkEnd,
    syscall::{bpf, pointer_halves},
};

/// vNIC ifindex -> the ends attached to it.
pub type KernelAttachments = BTreeMap<u32, BTreeSet<LinkEnd>>;

// From include/uapi/linux/bpf.h.
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
const BPF_LINK_GET_NEXT_ID: libc::c_long = 31;
const BPF_LINK_TYPE_XDP: u32 = 6;
const BPF_LINK_TYPE_TCX: u32 = 11;
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;

/// Every vNIC where the kernel runs a program of this pin root, and which.
pub fn kernel_attachments(pins: &PinLayout) -> anyhow::Result<KernelAttachments> {
    let config_path = pins.map(maps::CONFIG);
    let config = MapInfo::from_pin(&config_path)
        .with_context(|| format!("opening {}", config_path.display()))?
        .id();
    let mut ours = BTreeSet::new();
    for program in loaded_programs() {
        let Ok(program) = program else { continue };
        if program
            .map_ids()
            .ok()
            .flatten()
            .is_some_and(|ids| ids.contains(&config))
        {
            ours.insert(program.id());
        }
    }
    let mut attached = KernelAttachments::new();
    let mut id = 0;
    while let Some(next) = next_link_id(id)? {
        id = next;
        let Some(link) = link_info(id) else { continue };
        if !ours.contains(&link.program_id) || link.ifindex == 0 {
            continue;
        }
        let end = match (link.link_type, link.attach_type) {
            (BPF_LINK_TYPE_XDP, _) => LinkEnd::FromXdp,
            (BPF_LINK_TYPE_TCX, BPF_TCX_INGRESS) => LinkEnd::FromTcx,
            (BPF_LINK_TYPE_TCX, BPF_TCX_EGRESS) => LinkEnd::ToTcx,
            _ => continue,
        };
        attached.entry(link.ifindex).or_default().insert(end);
    }
    Ok(attached)
}

struct LinkInfo {
    link_type: u32,
    program_id: u32,
    /// 0 once the device went away.
    ifindex: u32,
    attach_type: u32,
}

/// The next link id after `id`; None at the end of the list.
fn next_link_id(id: u32) -> anyhow::Result<Option<u32>> {
    let mut attr = [id, 0, 0, 0, 0, 0];
    if bpf(BPF_LINK_GET_NEXT_ID, &mut attr) == 0 {
        return Ok(Some(attr[1]));
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::ENOENT) => Ok(None),
        _ => Err(error).context("listing the kernel's BPF links (BPF_LINK_GET_NEXT_ID)"),
    }
}

/// A link's type, program and device; None when it went away meanwhile.
fn link_info(id: u32) -> Option<LinkInfo> {
    let mut attr = [id, 0, 0, 0, 0, 0];
    let fd = bpf(BPF_LINK_GET_FD_BY_ID, &mut attr);
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel returned a new descriptor that we now own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // bpf_link_info: type, id, prog_id, then a union (8-byte aligned)
    // whose xdp and tcx members start with ifindex, tcx's then attach_type.
    let mut info = [0u32; 32];
    let [low, high] = pointer_halves(info.as_mut_ptr());
    let mut attr = [
        fd.as_raw_fd() as u32,
        std::mem::size_of_val(&info) as u32,
        low,
        high,
        0,
        0,
    ];
    if bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) != 0 {
        return None;
    }
    Some(LinkInfo {
        link_type: info[0],
        program_id: info[2],
        ifindex: info[4],
        attach_type: info[5],
    })
}
