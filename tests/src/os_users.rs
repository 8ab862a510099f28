//! OS users, each with a group of the same name, for tests of who may do
//! what: created with unique names, removed on drop (also when a test fails).

use crate::{run, unique_name};

pub struct TestUser {
    pub name: String,
}

impl TestUser {
    /// A user `<tag><pid>x<n>` whose primary group has the same name.
    pub fn create(tag: &str) -> anyhow::Result<TestUser> {
        let name = unique_name(tag);
        run("groupadd", &[&name])?;
        let user = TestUser { name };
        run(
            "useradd",
            &[
                "--no-create-home",
                "--gid",
                &user.name,
                "--shell",
                "/usr/sbin/nologin",
                &user.name,
            ],
        )?;
        Ok(user)
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = run("userdel", &[&self.name]);
        let _ = run("groupdel", &[&self.name]);
    }
}
