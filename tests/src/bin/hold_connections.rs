//! `hold_connections SOCKET COUNT`: what a local user flooding zpr's API
//! socket does. Opens COUNT connections and sends nothing; prints how many
//! connected, then, a second later, how many the server still keeps open
//! (not closed, not answered); holds them until stdin closes. Tests run it
//! as an unprivileged user (the server caps connections per uid).

use std::{
    io::{BufRead as _, Read as _, Write as _},
    os::unix::net::UnixStream,
    time::Duration,
};

fn main() -> anyhow::Result<()> {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let [socket, count] = arguments.as_slice() else {
        anyhow::bail!("usage: hold_connections SOCKET COUNT");
    };
    let count: usize = count.parse()?;
    let held: Vec<UnixStream> = (0..count)
        .filter_map(|_| UnixStream::connect(socket).ok())
        .collect();
    let mut stdout = std::io::stdout();
    writeln!(stdout, "connected {}", held.len())?;
    std::thread::sleep(Duration::from_secs(1));
    let mut open = 0;
    for stream in &held {
        stream.set_nonblocking(true)?;
        let mut byte = [0; 1];
        // Nothing to read yet: the server neither closed nor answered it.
        if (&*stream)
            .read(&mut byte)
            .is_err_and(|error| error.kind() == std::io::ErrorKind::WouldBlock)
        {
            open += 1;
        }
    }
    writeln!(stdout, "open {open}")?;
    stdout.flush()?;
    let mut line = String::new();
    while std::io::stdin().lock().read_line(&mut line)? > 0 {}
    Ok(())
}
