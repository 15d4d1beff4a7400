//! Checking a flow's `run_name` template against its parameters at compile time.

use syn::LitStr;

/// The `{name}`s of `template` (`{{` and `}}` are literal braces), or what is wrong with it.
fn placeholders(template: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            return Err(
                "`run_name` has a `}` with no `{` before it; write `}}` for a brace".into(),
            );
        }
        let Some(end) = tail.find('}') else {
            return Err("`run_name` has a `{` that is never closed; write `{{` for a brace".into());
        };
        names.push(tail[1..end].trim().to_string());
        rest = &tail[end + 1..];
    }
    Ok(names)
}

/// Checks that every `{name}` of the template is one of `parameters`; the error points at the
/// literal.
pub(crate) fn check(template: &LitStr, parameters: &[String]) -> syn::Result<()> {
    let text = template.value();
    if text.trim().is_empty() {
        return Err(syn::Error::new(
            template.span(),
            "`run_name` cannot be empty",
        ));
    }
    let names = placeholders(&text).map_err(|message| syn::Error::new(template.span(), message))?;
    for name in names {
        if !parameters.contains(&name) {
            let known = if parameters.is_empty() {
                "this flow takes no parameters".to_string()
            } else {
                format!(
                    "expected one of {}",
                    parameters
                        .iter()
                        .map(|p| format!("`{{{p}}}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(syn::Error::new(
                template.span(),
                format!(
                    "`run_name` uses `{{{name}}}`, which is not a parameter of this flow; {known}"
                ),
            ));
        }
    }
    Ok(())
}
