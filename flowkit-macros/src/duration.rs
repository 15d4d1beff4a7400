//! Durations written in options: seconds as a number (`60`, `0.5`), or a string (`"30s"`,
//! `"5m"`, `"1h 30m"`, `"250ms"`, `"1d"`), checked here at compile time.
//!
//! Strings are read by `humantime`, but only with the units the README documents: humantime
//! also reads months (`"5M"`), weeks and years, so a typo such as `"5M"` for five minutes would
//! silently be five months. Its error messages are not shown either (they list those units).
//! Every error here names the option and the forms the README documents.

use std::time::Duration;

use syn::{Expr, ExprLit, ExprUnary, Lit, UnOp, spanned::Spanned};

/// The forms a duration may take, as the README documents them.
const FORMS: &str = "seconds as a number (`60`, `0.5`) or a string of numbers with units `ms`, `s`, `m`, `h` or `d`, like \"30s\", \"5m\", \"1h 30m\" or \"250ms\"";

fn expected(option: &str) -> String {
    format!("`{option}` expects a duration: {FORMS}")
}

fn negative(option: &str) -> String {
    format!("`{option}` cannot be negative; it expects a duration: {FORMS}")
}

/// The units a duration string may use, as the README documents them.
const UNITS: [&str; 5] = ["ms", "s", "m", "h", "d"];

/// The first unit in `text` that is not one of [`UNITS`], if any.
fn undocumented_unit(text: &str) -> Option<&str> {
    text.split(|c: char| !c.is_alphabetic())
        .find(|word| !word.is_empty() && !UNITS.contains(word))
}

/// Parses the duration given to `option`.
pub(crate) fn parse(expr: &Expr, option: &str) -> syn::Result<Duration> {
    let lit = match expr {
        Expr::Lit(ExprLit { lit, .. }) => lit,
        // `-5` written where syn does not fold the sign into the literal.
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_),
            expr: inner,
            ..
        }) if matches!(
            &**inner,
            Expr::Lit(ExprLit {
                lit: Lit::Int(_) | Lit::Float(_),
                ..
            })
        ) =>
        {
            return Err(syn::Error::new(expr.span(), negative(option)));
        }
        other => return Err(syn::Error::new(other.span(), expected(option))),
    };
    match lit {
        Lit::Int(int) => {
            if int.base10_digits().starts_with('-') {
                return Err(syn::Error::new(int.span(), negative(option)));
            }
            let seconds: u64 = int.base10_parse().map_err(|_| {
                syn::Error::new(
                    int.span(),
                    format!("`{option}`: this number of seconds is too large"),
                )
            })?;
            Ok(Duration::from_secs(seconds))
        }
        Lit::Float(float) => {
            let seconds: f64 = float
                .base10_parse()
                .map_err(|_| syn::Error::new(float.span(), expected(option)))?;
            if seconds.is_sign_negative() {
                return Err(syn::Error::new(float.span(), negative(option)));
            }
            if !seconds.is_finite() {
                return Err(syn::Error::new(float.span(), expected(option)));
            }
            Duration::try_from_secs_f64(seconds).map_err(|_| {
                syn::Error::new(
                    float.span(),
                    format!("`{option}`: this number of seconds is too large"),
                )
            })
        }
        Lit::Str(text) => {
            let value = text.value();
            let trimmed = value.trim();
            if trimmed.parse::<f64>().is_ok() {
                return Err(syn::Error::new(
                    text.span(),
                    format!(
                        "`{option}`: the duration \"{value}\" needs a unit, like \"{trimmed}s\" (or write the number of seconds without quotes: `{trimmed}`)"
                    ),
                ));
            }
            if let Some(unit) = undocumented_unit(trimmed)
                && humantime::parse_duration(trimmed).is_ok()
            {
                return Err(syn::Error::new(
                    text.span(),
                    format!(
                        "`{option}`: `{unit}` in \"{value}\" is not a unit flowkit reads; write {FORMS}"
                    ),
                ));
            }
            humantime::parse_duration(trimmed).map_err(|_| {
                syn::Error::new(
                    text.span(),
                    format!("`{option}`: invalid duration \"{value}\"; write {FORMS}"),
                )
            })
        }
        other => Err(syn::Error::new(other.span(), expected(option))),
    }
}

/// Tokens building the duration in a `const` context.
pub(crate) fn tokens(duration: Duration) -> proc_macro2::TokenStream {
    let secs = duration.as_secs();
    let nanos = duration.subsec_nanos();
    quote::quote!(::core::time::Duration::new(#secs, #nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(source: &str) -> syn::Result<Duration> {
        parse(
            &syn::parse_str::<Expr>(source).expect("an expression"),
            "timeout",
        )
    }

    #[test]
    fn numbers_are_seconds_and_strings_have_units() {
        assert_eq!(parse_str("60").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_str("0.25").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_str("\"30s\"").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_str("\"5m\"").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_str("\"1h 30m\"").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_str("\"250ms\"").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_str("\"1d\"").unwrap(), Duration::from_secs(86_400));
    }

    #[test]
    fn bad_durations_are_errors() {
        assert!(parse_str("\"soon\"").is_err());
        assert!(parse_str("\"5\"").is_err());
        assert!(parse_str("true").is_err());
        assert!(parse_str("some_const").is_err());
        assert!(parse_str("-5").is_err());
        assert!(parse_str("-0.5").is_err());
    }

    #[test]
    fn units_humantime_reads_but_flowkit_does_not_document_are_errors() {
        // "5M" is five months to humantime: a likely typo for five minutes.
        for source in [
            "\"5M\"",
            "\"1y\"",
            "\"2 weeks\"",
            "\"10us\"",
            "\"1 hour\"",
            "\"3min\"",
        ] {
            let message = parse_str(source).unwrap_err().to_string();
            assert!(
                message.contains("is not a unit flowkit reads"),
                "{source}: {message}"
            );
            assert!(message.contains("`timeout`"), "{source}: {message}");
        }
        assert_eq!(parse_str("\"1h30m\"").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_str("\"2d 1h\"").unwrap(),
            Duration::from_secs(176_400)
        );
    }

    #[test]
    fn errors_name_the_option_and_only_documented_units() {
        for source in ["\"soon\"", "\"5 minutes please\"", "true", "-5", "\"5\""] {
            let message = parse_str(source).unwrap_err().to_string();
            assert!(message.contains("`timeout`"), "{source}: {message}");
            for undocumented in ["month", "year", "week", "nsec"] {
                assert!(!message.contains(undocumented), "{source}: {message}");
            }
        }
    }
}
