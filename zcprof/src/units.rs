//! Byte sizes on the command line (`64M`, `4K`, `1G`) and in reports.

/// Errors in a size argument.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// Empty, negative or not a number.
    #[error("'{0}' is not a size (examples: 4096, 64K, 16M, 1G)")]
    Invalid(String),
    /// Zero bytes.
    #[error("size must be greater than zero")]
    Zero,
    /// Does not fit in 64 bits.
    #[error("'{0}' is too large")]
    TooLarge(String),
}

/// Parses `N`, `NK`, `NM`, `NG`, `NT` (binary multiples; `KiB`/`KB`/`k` spellings too).
///
/// # Errors
/// On anything that is not a positive size.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, suffix) = t.split_at(digits);
    if number.is_empty() {
        return Err(SizeError::Invalid(text.to_owned()));
    }
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(SizeError::Invalid(text.to_owned())),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| SizeError::TooLarge(text.to_owned()))?;
    let value = n
        .checked_mul(1u64 << shift)
        .ok_or_else(|| SizeError::TooLarge(text.to_owned()))?;
    if value == 0 {
        Err(SizeError::Zero)
    } else {
        Ok(value)
    }
}

/// Parses a count: `N`, `NK` (thousands) or `NM` (millions), greater than zero.
///
/// # Errors
/// On anything else.
pub fn parse_count(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, suffix) = t.split_at(digits);
    let scale: u64 = match suffix.to_ascii_lowercase().as_str() {
        "" => 1,
        "k" => 1_000,
        "m" => 1_000_000,
        _ => {
            return Err(format!(
                "'{text}' is not a count (examples: 50000, 200K, 4M)"
            ));
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            format!("'{text}' is not a count greater than zero (examples: 50000, 200K, 4M)")
        })
}

/// Parses a duration: `10s`, `500ms`, `2m`, or a plain number of seconds.
///
/// # Errors
/// On anything else, or zero.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let (number, unit) = t.split_at(
        t.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len()),
    );
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (examples: 10s, 500ms, 2m)"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "'{text}' is not a duration (examples: 10s, 500ms, 2m)"
            ));
        }
    };
    if seconds <= 0.0 || !seconds.is_finite() {
        return Err("duration must be greater than zero".to_owned());
    }
    std::time::Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("'{text}' is longer than any run can last"))
}

/// Formats a byte count with a binary unit: `64 MiB`, `1.50 KiB`, `12 B`.
#[expect(clippy::cast_precision_loss, reason = "display precision")]
#[must_use]
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
    }

    #[test]
    fn counts_take_decimal_multiples_and_refuse_zero() {
        assert_eq!(parse_count("50000"), Ok(50_000));
        assert_eq!(parse_count("200K"), Ok(200_000));
        assert_eq!(parse_count("1m"), Ok(1_000_000));
        for bad in ["0", "", "1.5M", "-3", "4G", "99999999999999999999"] {
            assert!(parse_count(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_bad_sizes() {
        assert_eq!(parse_size("0"), Err(SizeError::Zero));
        assert_eq!(parse_size("0K"), Err(SizeError::Zero));
        assert!(matches!(parse_size("abc"), Err(SizeError::Invalid(_))));
        assert!(matches!(parse_size("-4K"), Err(SizeError::Invalid(_))));
        assert!(matches!(parse_size("12Q"), Err(SizeError::Invalid(_))));
        assert!(matches!(
            parse_size("99999999999999T"),
            Err(SizeError::TooLarge(_))
        ));
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("10s"),
            Ok(std::time::Duration::from_secs(10))
        );
        assert_eq!(
            parse_duration("500ms"),
            Ok(std::time::Duration::from_millis(500))
        );
        assert_eq!(
            parse_duration("2m"),
            Ok(std::time::Duration::from_secs(120))
        );
        assert_eq!(parse_duration("3"), Ok(std::time::Duration::from_secs(3)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(format_bytes(12), "12 B");
        assert_eq!(format_bytes(64 << 20), "64 MiB");
        assert_eq!(format_bytes(1536), "1.50 KiB");
    }
}
