//! What every management-API command shares: where the API is (the local
//! socket, or a remote server over mutual TLS), `--output`, the call, and
//! how answers and errors print.

use std::{io::Write as _, path::PathBuf, process::ExitCode};

use serde_json::Value;

use super::Output;
use crate::{
    api::API_VERSION,
    http::{
        client::Endpoint,
        message::{self as http},
        tls::client_config,
    },
};

#[derive(clap::Args, Debug, Clone)]
pub struct ApiArgs {
    /// The API socket of `zpr serve`.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/run/zpr/api.sock",
        global = true
    )]
    pub socket: PathBuf,
    /// A remote API (`zpr serve --listen`), over mutual TLS, instead of
    /// the local socket; needs --cert, --key and --cacert.
    #[arg(long, value_name = "https://HOST:PORT", env = "ZPR_API", global = true)]
    pub api: Option<String>,
    /// This client's certificate for --api: its CN is the user, its O and
    /// OU the groups IAM statements name.
    #[arg(long, value_name = "FILE", env = "ZPR_API_CERT", global = true)]
    pub cert: Option<PathBuf>,
    /// The private key of --cert (mode 0600).
    #[arg(long, value_name = "FILE", env = "ZPR_API_KEY", global = true)]
    pub key: Option<PathBuf>,
    /// The CA that signed the --api server's certificate.
    #[arg(long, value_name = "FILE", env = "ZPR_API_CACERT", global = true)]
    pub cacert: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Output::Text, global = true)]
    pub output: Output,
    /// Give up on an API that does not answer for this long.
    #[arg(long, value_name = "SECONDS", default_value_t = 60, global = true)]
    pub timeout: u64,
    /// For changes: check the change and print what it would open and
    /// close; change nothing (same IAM permission as the change itself).
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// For changes that stop protecting more than half of some host's
    /// protected endpoints (which are refused without it): confirm it.
    /// The commit records the confirmation and who gave it, and every
    /// host's agent applies the change instead of holding it back.
    #[arg(long, global = true)]
    pub allow_unprotect: bool,
}

/// A management verb group (`zpr policy ...`, `zpr namespace ...`): its
/// subcommands and how to reach the API.
#[derive(clap::Args, Debug)]
pub struct ApiCommand<C: clap::Subcommand> {
    #[command(subcommand)]
    pub command: C,
    #[command(flatten)]
    pub api: ApiArgs,
}

impl ApiArgs {
    /// Calls `METHOD /<version>PATH`; prints the answer with `text` (or as
    /// JSON). Exit 0 on success, 1 when the API refused.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        text: impl Fn(&Value) -> String,
    ) -> anyhow::Result<ExitCode> {
        self.call_matching(method, path, None, body, text)
    }

    /// As [`ApiArgs::call`], sending `if-match: ETAG` when given (the
    /// change is refused with 412 when the resource changed since).
    pub fn call_matching(
        &self,
        method: &str,
        path: &str,
        if_match: Option<&str>,
        body: Option<Value>,
        text: impl Fn(&Value) -> String,
    ) -> anyhow::Result<ExitCode> {
        let (response, answer) = self.request(method, path, if_match, body.as_ref())?;
        self.report(&response, &answer, text)
    }

    /// Prints an answer as [`ApiArgs::call`] does; its exit code.
    pub fn report(
        &self,
        response: &http::Response,
        answer: &Value,
        text: impl Fn(&Value) -> String,
    ) -> anyhow::Result<ExitCode> {
        let answer = answer.clone();
        let header = |name: &str| header(response, name);
        let succeeded = (200..300).contains(&response.status);
        let mut stdout = std::io::stdout().lock();
        if self.output == Output::Json {
            writeln!(stdout, "{}", serde_json::to_string_pretty(&answer)?)?;
        } else if succeeded && answer["dryRun"] == true {
            writeln!(stdout, "dry run, nothing changed; the change would do:")?;
            write!(
                stdout,
                "{}",
                answer["impactText"].as_str().unwrap_or_default()
            )?;
        } else if succeeded {
            write!(stdout, "{}", text(&answer))?;
        } else {
            eprintln!(
                "zpr: {} ({}): {}",
                answer["code"].as_str().unwrap_or("error"),
                response.status,
                answer["message"].as_str().unwrap_or_default()
            );
            if let Some(diagnostics) = answer["diagnostics"].as_str() {
                eprint!("{diagnostics}");
            }
        }
        if self.output == Output::Text
            && let Some(work_request) = header("opc-work-request-id")
        {
            let revision = header("zpr-revision")
                .map(|r| format!(", store revision {r} (`zpr wait {r}` for a fleet)"))
                .unwrap_or_default();
            let generation = header("zpr-generation")
                .map(|g| format!(", policy generation {g}"))
                .unwrap_or_default();
            eprintln!("work request {work_request}{revision}{generation}");
        }
        Ok(if succeeded {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }
}

impl ApiArgs {
    /// One call, not printed: the response and its JSON body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        if_match: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<(http::Response, Value)> {
        let mut flags = Vec::new();
        if self.dry_run && method != "GET" {
            flags.push("dryRun=true");
        }
        if self.allow_unprotect && method != "GET" {
            flags.push("allowUnprotect=true");
        }
        let query = if flags.is_empty() {
            String::new()
        } else {
            format!("?{}", flags.join("&"))
        };
        let response = self.endpoint()?.call(
            method,
            &format!("{API_VERSION}{path}{query}"),
            if_match,
            body,
            std::time::Duration::from_secs(self.timeout),
        )?;
        let answer = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        Ok((response, answer))
    }
}

impl ApiArgs {
    fn endpoint(&self) -> anyhow::Result<Endpoint> {
        let Some(url) = &self.api else {
            if let Some(flag) = [
                ("--cert", &self.cert),
                ("--key", &self.key),
                ("--cacert", &self.cacert),
            ]
            .into_iter()
            .find_map(|(flag, value)| value.as_ref().map(|_| flag))
            {
                anyhow::bail!("{flag} is for a remote API: give --api https://HOST:PORT too");
            }
            return Ok(Endpoint::Socket(self.socket.clone()));
        };
        let (Some(cert), Some(key), Some(cacert)) = (&self.cert, &self.key, &self.cacert) else {
            anyhow::bail!(
                "--api {url} needs --cert and --key (this client's certificate, which names \
                 the user and groups) and --cacert (the CA of the server's certificate)"
            );
        };
        Endpoint::https(url, client_config(cacert, cert, key)?)
    }
}

/// A response header's value.
pub fn header(response: &http::Response, name: &str) -> Option<String> {
    response
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

/// A list answer's items, one line each.
pub fn lines(answer: &Value, line: impl Fn(&Value) -> String) -> String {
    answer["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| line(item) + "\n")
        .collect()
}

/// A string field, or "".
pub fn field<'a>(value: &'a Value, name: &str) -> &'a str {
    value[name].as_str().unwrap_or_default()
}
