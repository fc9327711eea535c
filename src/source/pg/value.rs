//! How PostgreSQL's native column types become the cells the row reader hands out,
//! and how many bytes a value took on the wire.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;
use postgres::types::{FromSql, Type};
use postgres::Row;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use super::session::error_text;
use crate::source::row::{Cell, CellError, Cells};
use crate::source::timestamp;

impl Cells for Row {
    /// A value the driver cannot decode is unreadable (named in a `BadValue`), not a
    /// failed query.
    fn cell(&self, i: usize, source_tz: Tz) -> Result<Cell<'_>, CellError> {
        value(self, i, source_tz).map_err(CellError::Unreadable)
    }

    fn width(&self) -> usize {
        self.len()
    }
}

/// Reads column `i` of `row` by its native type; `source_tz` places `timestamp`
/// (without time zone) and `date` values.
fn value<'a>(row: &'a Row, i: usize, source_tz: Tz) -> Result<Cell<'a>, String> {
    let ty = row.columns()[i].type_();
    fn get<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> Result<Option<T>, String> {
        row.try_get::<_, Option<T>>(i).map_err(|e| error_text(&e))
    }
    // The values no number or time can hold (`NaN`, `infinity`, …) come out as the
    // text PostgreSQL prints for them: the readers then treat them exactly as the same
    // text in a SQLite file (an unreadable time is counted, not an error).
    if let Some(text) = special(ty, row, i) {
        return Ok(Cell::Text(text.as_bytes()));
    }
    let v = match *ty {
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            get::<&str>(row, i)?.map(|t| Cell::Text(t.as_bytes()))
        }
        Type::INT2 => get::<i16>(row, i)?.map(|v| Cell::Int(v.into())),
        Type::INT4 => get::<i32>(row, i)?.map(|v| Cell::Int(v.into())),
        Type::INT8 => get::<i64>(row, i)?.map(Cell::Int),
        Type::OID => get::<u32>(row, i)?.map(|v| Cell::Int(v.into())),
        Type::FLOAT4 => get::<f32>(row, i)?.map(|v| Cell::Real(v.into())),
        Type::FLOAT8 => get::<f64>(row, i)?.map(Cell::Real),
        Type::NUMERIC => match get::<Decimal>(row, i) {
            Ok(v) => v.map(|d| Cell::Real(d.to_f64().unwrap_or(f64::NAN))),
            // Beyond rust_decimal's 96 bits: still a number, read from its digits.
            Err(_) => match get::<Raw>(row, i)? {
                None => None,
                Some(_) => Some(Cell::Real(
                    numeric_f64(row, i).ok_or("a numeric value that cannot be decoded")?,
                )),
            },
        },
        Type::BOOL => get::<bool>(row, i)?.map(Cell::Bool),
        Type::TIMESTAMPTZ => get::<DateTime<Utc>>(row, i)?.map(Cell::Time),
        Type::TIMESTAMP => {
            get::<NaiveDateTime>(row, i)?.map(|t| Cell::Time(timestamp::localize(t, source_tz)))
        }
        Type::DATE => get::<NaiveDate>(row, i)?.map(|d| {
            Cell::Time(timestamp::localize(
                d.and_time(Default::default()),
                source_tz,
            ))
        }),
        _ => {
            // Any other type: NULL is NULL; a value is named by its type.
            if get::<Raw>(row, i)?.is_none() {
                None
            } else {
                Some(Cell::Other(ty.name()))
            }
        }
    };
    Ok(v.unwrap_or(Cell::Null))
}

/// The text PostgreSQL prints for a value of `ty` that is no finite number or time
/// (`NaN`, `Infinity`, `-Infinity`, `infinity`, `-infinity`), from the binary form the
/// server sent; `None` for every other value.
fn special(ty: &Type, row: &Row, i: usize) -> Option<&'static str> {
    let raw = || {
        row.try_get::<_, Option<Bytes<'_>>>(i)
            .ok()
            .flatten()
            .map(|b| b.0)
    };
    match *ty {
        // The sign word of a numeric: NaN, +Infinity, -Infinity.
        Type::NUMERIC => match raw()?.get(4..6)? {
            [0xC0, 0x00] => Some("NaN"),
            [0xD0, 0x00] => Some("Infinity"),
            [0xF0, 0x00] => Some("-Infinity"),
            _ => None,
        },
        Type::TIMESTAMP | Type::TIMESTAMPTZ => match i64::from_be_bytes(raw()?.try_into().ok()?) {
            i64::MAX => Some("infinity"),
            i64::MIN => Some("-infinity"),
            _ => None,
        },
        Type::DATE => match i32::from_be_bytes(raw()?.try_into().ok()?) {
            i32::MAX => Some("infinity"),
            i32::MIN => Some("-infinity"),
            _ => None,
        },
        _ => None,
    }
}

/// A finite numeric too large for rust_decimal, from its base-10000 digits
/// (`ndigits`, `weight`, `sign`, `dscale`, then the digits).
fn numeric_f64(row: &Row, i: usize) -> Option<f64> {
    let raw = row.try_get::<_, Option<Bytes<'_>>>(i).ok()??.0;
    let word = |k: usize| raw.get(k..k + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let ndigits = usize::from(word(0)?);
    let weight = i32::from(word(2)? as i16);
    let negative = match word(4)? {
        0x0000 => false,
        0x4000 => true,
        _ => return None,
    };
    // Digits printed in decimal and parsed once: correctly rounded, as SQLite would
    // read the same number from text.
    let mut text = String::with_capacity(ndigits * 4 + 8);
    if negative {
        text.push('-');
    }
    for k in 0..ndigits {
        text.push_str(&format!("{:04}", word(8 + 2 * k)?));
    }
    if ndigits == 0 {
        text.push('0');
    }
    let exponent = 4 * (weight + 1 - ndigits as i32);
    text.push_str(&format!("e{exponent}"));
    text.parse().ok()
}

/// The bytes of a row's `DataRow` message as received, for the transfer count: its
/// type byte, length and column count (7 bytes), then each value's length word
/// (4 bytes) and its bytes (none for NULL).
pub(super) fn row_bytes(row: &Row) -> u64 {
    7 + (0..row.len())
        .map(|i| {
            4 + row
                .try_get::<_, Option<Raw>>(i)
                .ok()
                .flatten()
                .map_or(0, |r| r.0 as u64)
        })
        .sum::<u64>()
}

/// Any value, as its length on the wire.
struct Raw(usize);

/// Any value, as the bytes on the wire.
struct Bytes<'a>(&'a [u8]);

impl<'a> FromSql<'a> for Bytes<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Bytes(raw))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw.len()))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}
