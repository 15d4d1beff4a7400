//! Durations written in options: seconds as a number (`60`, `0.5`), or a string (`"30s"`,
//! `"5m"`, `"1h 30m"`, `"250ms"`), checked here at compile time.

use std::time::Duration;

use syn::{Expr, ExprLit, Lit, spanned::Spanned};

pub(crate) fn parse(expr: &Expr) -> syn::Result<Duration> {
    let Expr::Lit(ExprLit { lit, .. }) = expr else {
        return Err(syn::Error::new(
            expr.span(),
            "expected a duration: seconds as a number (`60`) or a string like \"30s\", \"5m\", \"2h\"",
        ));
    };
    match lit {
        Lit::Int(int) => {
            let seconds: u64 = int.base10_parse()?;
            Ok(Duration::from_secs(seconds))
        }
        Lit::Float(float) => {
            let seconds: f64 = float.base10_parse()?;
            if !seconds.is_finite() || seconds < 0.0 {
                return Err(syn::Error::new(float.span(), "a duration cannot be negative"));
            }
            Duration::try_from_secs_f64(seconds)
                .map_err(|_| syn::Error::new(float.span(), "this duration is too long"))
        }
        Lit::Str(text) => humantime::parse_duration(text.value().trim()).map_err(|error| {
            syn::Error::new(
                text.span(),
                format!(
                    "invalid duration \"{}\": {error}; write it like \"30s\", \"5m\", \"2h\" or \"1h 30m\"",
                    text.value()
                ),
            )
        }),
        other => Err(syn::Error::new(
            other.span(),
            "expected a duration: seconds as a number (`60`) or a string like \"30s\", \"5m\", \"2h\"",
        )),
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
        parse(&syn::parse_str::<Expr>(source).expect("an expression"))
    }

    #[test]
    fn numbers_are_seconds_and_strings_have_units() {
        assert_eq!(parse_str("60").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_str("0.25").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_str("\"30s\"").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_str("\"5m\"").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_str("\"1h 30m\"").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_str("\"250ms\"").unwrap(), Duration::from_millis(250));
    }

    #[test]
    fn bad_durations_are_errors() {
        assert!(parse_str("\"soon\"").is_err());
        assert!(parse_str("\"5\"").is_err());
        assert!(parse_str("true").is_err());
        assert!(parse_str("some_const").is_err());
    }
}
