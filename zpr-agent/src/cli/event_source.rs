//! Where `zpr monitor` and `zpr suggest --live` read kernel events from:
//! the running agent's event socket (the agent is the ring buffer's one
//! reader and serves any number of readers beside its flow log), or the
//! pinned ring buffer itself when no agent runs.

use std::path::Path;

use tokio::{
    io::{BufReader, unix::AsyncFd},
    net::UnixStream,
    sync::mpsc,
};

use crate::{
    daemon::event_hub::{self, Frame},
    datapath::{PinLayout, decode_event, pinned_events},
};

/// Frames read from the agent ahead of the reader handling them.
const FRAMES_IN_FLIGHT: usize = 256;

/// Where the events come from.
pub(super) enum Source {
    /// The running agent, which reads the ring buffer for every monitor:
    /// its frames, read by a task of their own (reading a frame is not
    /// cancel-safe, receiving one is).
    Agent(mpsc::Receiver<anyhow::Result<Frame>>),
    /// The pinned ring buffer itself, when no agent serves the events
    /// (this monitor is then its only reader).
    Ring(Box<AsyncFd<aya::maps::RingBuf<aya::maps::MapData>>>),
}

impl Source {
    pub(super) async fn open(run_dir: &Path, pins: &PinLayout) -> anyhow::Result<Source> {
        if let Ok(agent) = UnixStream::connect(event_hub::socket_path(run_dir)).await {
            let (frames, received) = mpsc::channel(FRAMES_IN_FLIGHT);
            tokio::spawn(read_frames(BufReader::new(agent), frames));
            return Ok(Source::Agent(received));
        }
        // SAFETY: the ring buffer owns its fd and lives inside the
        // AsyncFd, which deregisters before dropping it.
        let ring = unsafe { AsyncFd::register(pinned_events(pins)?) }
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Source::Ring(Box::new(ring)))
    }

    /// What arrived next; `None` once the agent has gone away.
    pub(super) async fn next(&mut self) -> anyhow::Result<Option<Vec<Frame>>> {
        match self {
            Source::Agent(frames) => frames
                .recv()
                .await
                .map(|frame| frame.map(|frame| vec![frame]))
                .transpose(),
            Source::Ring(ring) => {
                let mut guard = ring.readable_mut().await?;
                let mut frames = Vec::new();
                while let Some(item) = guard.get_inner_mut().next() {
                    frames.extend(decode_event(&item).map(Frame::Event));
                }
                guard.clear_ready();
                Ok(Some(frames))
            }
        }
    }
}

/// Hands the agent's frames on until it closes the stream (or a frame
/// cannot be read, which ends it too).
async fn read_frames(
    mut agent: BufReader<UnixStream>,
    frames: mpsc::Sender<anyhow::Result<Frame>>,
) {
    loop {
        let frame = Frame::read(&mut agent).await.transpose();
        let last = !matches!(frame, Some(Ok(_)));
        if let Some(frame) = frame
            && frames.send(frame).await.is_err()
        {
            return;
        }
        if last {
            return;
        }
    }
}
