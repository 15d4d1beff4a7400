//! Who may do what: scoped API keys, and the audit trail of operators' actions.
//!
//! A key holds a **set** of scopes, not a rank: a worker's key needs `write` (send events,
//! heartbeats, claim runs) but should not `operate` (trigger, cancel, pause, backfill), and an
//! operator's dashboard needs `read` and `operate` but never writes events. `admin` is the one
//! scope that implies the others: a key that can make keys could make itself any key.
//!
//! ```
//! use flowkit_api::access::{Scope, Scopes};
//! let worker = Scopes::parse_list("write").unwrap();
//! assert!(worker.allows(Scope::Write) && !worker.allows(Scope::Operate));
//! let operator = Scopes::parse_list("read,operate").unwrap();
//! assert!(operator.allows(Scope::Read) && !operator.allows(Scope::Write));
//! assert!(Scopes::parse_list("admin").unwrap().allows(Scope::Operate));
//! assert_eq!(operator.to_string(), "read,operate");
//! ```

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One thing a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read runs, flows, deployments, workers, backfills, the audit trail: the dashboard and
    /// queries.
    Read,
    /// What programs and workers do: send events and heartbeats, register deployments, poll
    /// for runs and hand them back.
    Write,
    /// What operators do: trigger, cancel, pause and resume, backfill.
    Operate,
    /// Create, list and revoke keys; implies every other scope.
    Admin,
}

impl Scope {
    /// Every scope, in order.
    pub const ALL: [Scope; 4] = [Scope::Read, Scope::Write, Scope::Operate, Scope::Admin];

    /// Its name in the API and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Operate => "operate",
            Scope::Admin => "admin",
        }
    }

    /// The scope named `name`.
    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The scopes a key holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Scopes(u8);

impl Scopes {
    /// Every scope (the server's `--api-key`, or a server without keys).
    pub const ALL: Scopes = Scopes(0b1111);

    /// These scopes.
    pub fn of(scopes: &[Scope]) -> Scopes {
        Scopes(scopes.iter().fold(0, |bits, s| bits | s.bit()))
    }

    /// Scopes written `read,operate` (commas, spaces allowed); an error names a wrong one.
    pub fn parse_list(text: &str) -> Result<Scopes, String> {
        let mut bits = 0;
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let scope = Scope::parse(name).ok_or_else(|| {
                format!("unknown scope {name:?}: expected read, write, operate or admin")
            })?;
            bits |= scope.bit();
        }
        if bits == 0 {
            return Err("no scope: expected read, write, operate or admin".into());
        }
        Ok(Scopes(bits))
    }

    /// Whether a key with these scopes may do what needs `scope` (`admin` may do everything).
    pub fn allows(self, scope: Scope) -> bool {
        self.0 & (scope.bit() | Scope::Admin.bit()) != 0
    }

    /// The scopes held, in order.
    pub fn list(self) -> Vec<Scope> {
        Scope::ALL
            .into_iter()
            .filter(|s| self.0 & s.bit() != 0)
            .collect()
    }

    /// Whether no scope is held.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.list().into_iter().map(Scope::as_str).collect();
        f.write_str(&names.join(","))
    }
}

/// `POST /api/keys`: a key to make.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewKey {
    /// Its name: shown in the audit trail for what it does; unique among keys.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
}

/// A key as listed: never the key itself, which is shown once, when made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyView {
    /// Its name.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// The key's first characters, to tell which key someone holds.
    pub prefix: String,
    /// When it was made …
    pub created_at: DateTime<Utc>,
    /// … and by which key.
    pub created_by: String,
}

/// The answer to `POST /api/keys`: the key, this once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreatedKey {
    /// The key as stored (without the secret).
    #[serde(flatten)]
    pub view: KeyView,
    /// The key: send it as `Authorization: Bearer <key>`. The server keeps only its hash.
    pub key: String,
}

/// `GET /api/keys/me`: the key a request was made with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Me {
    /// Its name (`api-key` for the server's `--api-key`; `anonymous` when the server checks no
    /// key).
    pub name: String,
    /// What it may do (`admin` implies the rest).
    pub scopes: Vec<Scope>,
}

/// What an operator did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// Started a run of a deployment.
    Trigger,
    /// Cancelled a flow run.
    Cancel,
    /// Resumed a flow run that failed ("Retry from failure").
    Retry,
    /// Paused a deployment's schedules.
    Pause,
    /// Resumed them.
    Resume,
    /// Started a backfill.
    Backfill,
    /// Cancelled a backfill.
    BackfillCancel,
    /// Made a key.
    KeyCreate,
    /// Revoked a key.
    KeyRevoke,
    /// Set a concurrency or rate limit.
    LimitSet,
    /// Removed a limit.
    LimitRemove,
    /// Made an automation.
    AutomationCreate,
    /// Deleted an automation.
    AutomationDelete,
    /// Registered a new deployment, or changed a registered one's spec (what a serving
    /// program does at start with a `write` key).
    DeploymentRegister,
}

impl AuditAction {
    /// Its name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Trigger => "trigger",
            AuditAction::Cancel => "cancel",
            AuditAction::Retry => "retry",
            AuditAction::Pause => "pause",
            AuditAction::Resume => "resume",
            AuditAction::Backfill => "backfill",
            AuditAction::BackfillCancel => "backfill_cancel",
            AuditAction::KeyCreate => "key_create",
            AuditAction::KeyRevoke => "key_revoke",
            AuditAction::LimitSet => "limit_set",
            AuditAction::LimitRemove => "limit_remove",
            AuditAction::AutomationCreate => "automation_create",
            AuditAction::AutomationDelete => "automation_delete",
            AuditAction::DeploymentRegister => "deployment_register",
        }
    }

    /// The action named `name`.
    pub fn parse(name: &str) -> Option<AuditAction> {
        [
            AuditAction::Trigger,
            AuditAction::Cancel,
            AuditAction::Retry,
            AuditAction::Pause,
            AuditAction::Resume,
            AuditAction::Backfill,
            AuditAction::BackfillCancel,
            AuditAction::KeyCreate,
            AuditAction::KeyRevoke,
            AuditAction::LimitSet,
            AuditAction::LimitRemove,
            AuditAction::AutomationCreate,
            AuditAction::AutomationDelete,
            AuditAction::DeploymentRegister,
        ]
        .into_iter()
        .find(|a| a.as_str() == name)
    }
}

/// One entry of the audit trail (`GET /api/audit`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Its id (UUID v7: ids sort by time).
    pub id: Uuid,
    /// When.
    pub at: DateTime<Utc>,
    /// The name of the key that did it.
    pub actor: String,
    /// What it did.
    pub action: AuditAction,
    /// The deployment it touched, if any.
    pub deployment: Option<String>,
    /// The flow run it touched, if any.
    pub flow_run_id: Option<Uuid>,
    /// The backfill it touched, if any.
    pub backfill_id: Option<Uuid>,
    /// More, in words (a key's name and scopes, a backfill's range).
    pub detail: Option<String>,
}
