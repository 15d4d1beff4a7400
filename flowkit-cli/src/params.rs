//! Run parameters on the command line: `--params JSON` (an object) and `--param key=value`
//! (each over it), a value read as JSON when it is JSON, else as a string.

use serde_json::{Map, Value};

/// The parameters options of `trigger` and `backfill`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ParamArgs {
    /// A parameter, `key=value`; the value is JSON when it parses as JSON (`3`, `true`, `null`,
    /// `"quoted"`, `{"a": 1}`), else a string. Repeat for more.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub param: Vec<(String, Value)>,
    /// The parameters as a JSON object; `--param`s go over it.
    #[arg(long, value_name = "JSON", value_parser = parse_object)]
    pub params: Option<Map<String, Value>>,
}

impl ParamArgs {
    /// The parameters as one object, or None when none were given.
    pub fn object(&self) -> Option<Value> {
        if self.param.is_empty() && self.params.is_none() {
            return None;
        }
        let mut object = self.params.clone().unwrap_or_default();
        for (key, value) in &self.param {
            object.insert(key.clone(), value.clone());
        }
        Some(Value::Object(object))
    }
}

/// The options that set the parameter fields the server may blame.
pub const PARAMETER_OPTIONS: (&str, &str) = ("parameters.", "--param");

/// `key=value`.
pub fn parse_param(text: &str) -> Result<(String, Value), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, like days=7; got {text:?}"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("the parameter has no name: {text:?}"));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
    Ok((key.to_string(), value))
}

/// A JSON object.
fn parse_object(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str(text) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => Err(format!(
            "expected a JSON object like {{\"days\": 7}}; got {}",
            kind(&other)
        )),
        Err(error) => Err(format!("not JSON: {error}")),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_value_is_json_when_it_parses_else_a_string() {
        for (text, value) in [
            ("n=3", json!(3)),
            ("n=2.5", json!(2.5)),
            ("flag=true", json!(true)),
            ("none=null", json!(null)),
            ("s=\"7\"", json!("7")),
            ("o={\"a\": [1]}", json!({"a": [1]})),
            ("day=2024-01-01", json!("2024-01-01")),
            ("code=007", json!("007")),
            ("empty=", json!("")),
            ("eq=a=b", json!("a=b")),
        ] {
            let (_, got) = parse_param(text).expect(text);
            assert_eq!(got, value, "{text}");
        }
        assert!(parse_param("novalue").is_err());
        assert!(parse_param("=3").is_err());
    }

    #[test]
    fn params_go_over_the_json_object() {
        let args = ParamArgs {
            param: vec![("b".into(), json!(2)), ("c".into(), json!("x"))],
            params: parse_object(r#"{"a": 1, "b": 1}"#).ok(),
        };
        assert_eq!(args.object(), Some(json!({"a": 1, "b": 2, "c": "x"})));
        assert_eq!(ParamArgs::default().object(), None);
        assert!(parse_object("[1]").is_err());
        assert!(parse_object("{").is_err());
    }
}
