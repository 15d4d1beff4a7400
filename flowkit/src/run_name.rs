//! Run names: each flow run gets a short human-readable name, from the flow's `run_name`
//! template (`#[flow(run_name = "etl-{day}")]`) or generated (`brave-otter`).
//!
//! A generated name is two words picked from the random bits of the run's id: easy to say on a
//! call or type in a search, and the same wherever the id is. It leaves out the flow's name and
//! the date, which every view already shows beside it.

use uuid::Uuid;

/// The longest name kept, in characters (a longer rendering is cut, with `…`).
pub const MAX_LEN: usize = 200;

const ADJECTIVES: [&str; 64] = [
    "amber", "ample", "bold", "brave", "brisk", "calm", "clever", "cosmic", "crisp", "curious",
    "daring", "dashing", "eager", "early", "fancy", "fast", "fearless", "fine", "gentle", "glad",
    "golden", "grand", "happy", "hardy", "honest", "humble", "jolly", "keen", "kind", "lively",
    "lucky", "merry", "mighty", "modest", "neat", "nimble", "noble", "patient", "placid", "plucky",
    "polite", "proud", "quick", "quiet", "rapid", "ready", "robust", "rosy", "shiny", "silent",
    "sleek", "smart", "snappy", "steady", "sunny", "swift", "tidy", "tough", "upbeat", "valiant",
    "vivid", "warm", "wise", "zesty",
];

const ANIMALS: [&str; 64] = [
    "badger", "beaver", "bison", "bobcat", "camel", "cheetah", "cobra", "condor", "coyote",
    "crane", "dingo", "dolphin", "eagle", "falcon", "ferret", "finch", "fox", "gazelle", "gecko",
    "gibbon", "heron", "hippo", "ibex", "ibis", "jackal", "jaguar", "koala", "lemur", "leopard",
    "lynx", "macaw", "marmot", "marten", "mink", "moose", "newt", "ocelot", "orca", "osprey",
    "otter", "owl", "panda", "parrot", "pelican", "penguin", "puffin", "quail", "rabbit", "raven",
    "salmon", "seal", "shrew", "sloth", "stork", "swan", "tapir", "tiger", "toucan", "turtle",
    "viper", "walrus", "weasel", "wombat", "yak",
];

/// The generated name of the run with this id: an adjective and an animal, from the id's
/// random bits.
///
/// ```
/// let id = uuid::Uuid::parse_str("01936b2e-7b4c-7d2a-9c1e-3f2b6a1d9e00").unwrap();
/// let name = flowkit::run_name::generated(id);
/// assert_eq!(name, flowkit::run_name::generated(id));
/// assert_eq!(name.split('-').count(), 2);
/// ```
pub fn generated(id: Uuid) -> String {
    let bytes = id.as_bytes();
    let adjective = ADJECTIVES[usize::from(bytes[13]) % ADJECTIVES.len()];
    let animal = ANIMALS[usize::from(bytes[15]) % ANIMALS.len()];
    format!("{adjective}-{animal}")
}

/// `template` with each `{name}` replaced by the parameter `name` (a string as it is, any other
/// value as compact JSON); `{{` and `}}` are literal braces. A name no parameter has stays as
/// written (`#[flow]` rejects those at compile time). At most [`MAX_LEN`] characters.
///
/// ```
/// let parameters = serde_json::json!({ "day": "2026-11-28", "shard": 3 });
/// assert_eq!(flowkit::run_name::render("etl-{day}-{shard}", &parameters), "etl-2026-11-28-3");
/// assert_eq!(flowkit::run_name::render("{{literal}}", &parameters), "{literal}");
/// ```
pub fn render(template: &str, parameters: &serde_json::Value) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('{')
            && let Some(end) = tail.find('}')
        {
            let key = &tail[1..end];
            match parameters.get(key.trim()) {
                Some(serde_json::Value::String(text)) => out.push_str(text),
                Some(value) => out.push_str(&value.to_string()),
                None => out.push_str(&tail[..=end]),
            }
            rest = &tail[end + 1..];
            continue;
        }
        out.push_str(&tail[..1]);
        rest = &tail[1..];
    }
    out.push_str(rest);
    cut(out)
}

fn cut(name: String) -> String {
    match name.char_indices().nth(MAX_LEN) {
        Some((at, _)) => {
            let mut short = name[..at].to_string();
            short.push('…');
            short
        }
        None => name,
    }
}

/// The name of a run of a flow with these options: its template rendered, or generated.
pub(crate) fn of_run(template: Option<&str>, parameters: &serde_json::Value, id: Uuid) -> String {
    match template {
        Some(template) => render(template, parameters),
        None => generated(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braces_and_values() {
        let p = serde_json::json!({ "day": "d", "list": [1, 2], "n": null });
        assert_eq!(render("a-{day}", &p), "a-d");
        assert_eq!(render("{list}", &p), "[1,2]");
        assert_eq!(render("{n}", &p), "null");
        assert_eq!(render("{missing}", &p), "{missing}");
        assert_eq!(render("open { only", &p), "open { only");
        assert_eq!(render("}}{{", &p), "}{");
        let long = "x".repeat(300);
        assert_eq!(render(&long, &p).chars().count(), MAX_LEN + 1);
    }

    #[test]
    fn generated_names_vary() {
        let names: std::collections::HashSet<String> =
            (0..200).map(|_| generated(Uuid::now_v7())).collect();
        assert!(names.len() > 50, "{names:?}");
    }
}
