//! Plain text tables: columns aligned by the width of their widest cell, two spaces apart, no
//! trailing spaces.

/// A table with a header row.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    right: Vec<bool>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            right: vec![false; header.len()],
        }
    }

    /// Aligns column `column` to the right (numbers).
    pub fn right(mut self, column: usize) -> Table {
        if let Some(right) = self.right.get_mut(column) {
            *right = true;
        }
        self
    }

    /// Adds a row (missing cells are empty, extra ones dropped).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as lines of text, each ending in a newline.
    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (c, w) in widths.iter_mut().enumerate() {
                *w = (*w).max(width(cell(row, c)));
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (c, (column_width, right)) in widths.iter().zip(&self.right).enumerate() {
                let text = cell(row, c);
                let pad = column_width - width(text);
                if c > 0 {
                    line.push_str("  ");
                }
                if *right {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(text);
                } else {
                    line.push_str(text);
                    if c + 1 < columns {
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

fn cell(row: &[String], column: usize) -> &str {
    row.get(column).map(String::as_str).unwrap_or("")
}

/// The width of `text` on a terminal, counting every character as one column (the state
/// symbols used here are all one column wide).
pub fn width(text: &str) -> usize {
    text.chars().count()
}

/// `text`, cut to `max` characters with an ellipsis.
pub fn cut(text: &str, max: usize) -> String {
    if width(text) <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Named values, one a line, values aligned: `  flow       etl`. A value of several lines
/// continues under the first.
pub fn pairs(rows: &[(&str, String)]) -> String {
    let key_width = rows.iter().map(|(k, _)| width(k)).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in rows {
        let mut lines = value.lines();
        let first = lines.next().unwrap_or("");
        let line = format!("  {key:<key_width$}  {first}");
        out.push_str(line.trim_end());
        out.push('\n');
        for more in lines {
            let line = format!("  {:key_width$}  {more}", "");
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_the_widest_cell_without_trailing_spaces() {
        let mut table = Table::new(&["NAME", "N", "NOTE"]).right(1);
        table.row(vec!["nightly".into(), "3".into(), String::new()]);
        table.row(vec!["a".into(), "120".into(), "✓✗".into()]);
        assert_eq!(
            table.render(),
            "NAME       N  NOTE\nnightly    3\na        120  ✓✗\n"
        );
    }

    #[test]
    fn pairs_align_their_values_and_continue_long_ones() {
        let text = pairs(&[("flow", "etl".into()), ("next runs", "a\nb".into())]);
        assert_eq!(text, "  flow       etl\n  next runs  a\n             b\n");
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
    }
}
