//! A tenancy's least-privilege etcd roles and users, as data: printed as
//! etcdctl commands (`zpr fleet etcd-roles`) or made through etcd's auth
//! API (`--apply`), from one definition. API servers read and write the
//! tenancy, monitoring reads it, and each node's agent reads the state and
//! writes only its own node record and its claim under `contenders/`. A
//! client certificate's CN is the etcd user.

use etcd_client::{Client, Permission, UserAddOptions};

use super::{
    EtcdLocation,
    etcd::{REQUEST_TIMEOUT, cause},
};

/// One step of making the roles and users.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    AddRole(String),
    Grant {
        role: String,
        write: bool,
        key: String,
        prefix: bool,
    },
    /// A user who authenticates by client certificate (no password).
    AddUser(String),
    GrantRole {
        user: String,
        role: String,
    },
}

/// The steps for the tenancy of `location`, and an agent user for each of
/// `nodes` (`zpr-TENANCY-node-NODE`).
pub fn steps(location: &EtcdLocation, nodes: &[String]) -> Vec<Step> {
    let tenancy = &location.tenancy;
    let (api, monitor, agent) = (
        format!("zpr-{tenancy}-api"),
        format!("zpr-{tenancy}-monitor"),
        format!("zpr-{tenancy}-agent"),
    );
    let grant = |role: &str, write: bool, key: String, prefix: bool| Step::Grant {
        role: role.to_owned(),
        write,
        key,
        prefix,
    };
    let mut steps = vec![
        Step::AddRole(api.clone()),
        grant(&api, true, location.prefix(), true),
        Step::AddRole(monitor.clone()),
        grant(&monitor, false, location.prefix(), true),
        Step::AddRole(agent.clone()),
        grant(&agent, false, location.state_prefix(), true),
    ];
    for user in [&api, &monitor] {
        steps.push(Step::AddUser(user.clone()));
        steps.push(Step::GrantRole {
            user: user.clone(),
            role: user.clone(),
        });
    }
    for node in nodes {
        let user = format!("zpr-{tenancy}-node-{node}");
        steps.extend([
            Step::AddRole(user.clone()),
            grant(
                &user,
                true,
                format!("{}{node}", location.nodes_prefix()),
                false,
            ),
            grant(
                &user,
                true,
                format!("{}{node}/", location.contenders_prefix()),
                true,
            ),
            Step::AddUser(user.clone()),
            Step::GrantRole {
                user: user.clone(),
                role: agent.clone(),
            },
            Step::GrantRole {
                user: user.clone(),
                role: user,
            },
        ]);
    }
    steps
}

/// As etcdctl's arguments.
impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::AddRole(role) => write!(f, "role add {role}"),
            Step::Grant {
                role,
                write,
                key,
                prefix,
            } => write!(
                f,
                "role grant-permission {role}{} {} {key}",
                if *prefix { " --prefix=true" } else { "" },
                if *write { "readwrite" } else { "read" }
            ),
            Step::AddUser(user) => write!(f, "user add {user} --no-password=true"),
            Step::GrantRole { user, role } => write!(f, "user grant-role {user} {role}"),
        }
    }
}

/// Makes `step` with an administrator's client; one already made (a role
/// or user that exists) is left as it is. Returns whether it was made.
async fn apply(client: &mut Client, location: &EtcdLocation, step: &Step) -> anyhow::Result<bool> {
    let outcome = match step {
        Step::AddRole(role) => client.role_add(role.as_str()).await.map(drop),
        Step::Grant {
            role,
            write,
            key,
            prefix,
        } => {
            let mut permission = if *write {
                Permission::read_write(key.as_str())
            } else {
                Permission::read(key.as_str())
            };
            if *prefix {
                permission = permission.with_prefix();
            }
            client
                .role_grant_permission(role.as_str(), permission)
                .await
                .map(drop)
        }
        Step::AddUser(user) => client
            .user_add(user.as_str(), "", Some(UserAddOptions::new().with_no_pwd()))
            .await
            .map(drop),
        Step::GrantRole { user, role } => client
            .user_grant_role(user.as_str(), role.as_str())
            .await
            .map(drop),
    };
    match outcome {
        Ok(()) => Ok(true),
        Err(error) if cause(&error).contains("already exists") => Ok(false),
        Err(error) => {
            // One line, naming the store and the step.
            Err(anyhow::anyhow!("{location}: {step}: {}", cause(&error)))
        }
    }
}

/// Makes every step (each within zpr's request deadline); how many were
/// made rather than found made.
pub async fn apply_all(
    client: &mut Client,
    location: &EtcdLocation,
    steps: &[Step],
) -> anyhow::Result<usize> {
    let mut made = 0;
    for step in steps {
        let applied = tokio::time::timeout(REQUEST_TIMEOUT, apply(client, location, step))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "{location}: {step}: no answer within {}s",
                    REQUEST_TIMEOUT.as_secs()
                )
            })??;
        made += usize::from(applied);
    }
    Ok(made)
}
