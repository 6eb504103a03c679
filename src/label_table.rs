//! One way to say a code or a label. [`label_table!`] declares an enum from a table of
//! rows and generates, from those same rows, everything that names its values: the
//! variants, `ALL`, the metric label, the STUN code and reason phrase, and the list of
//! labels that metric help text quotes. A label therefore has one spelling, and help
//! text cannot fall behind the enum it describes.

/// Declares an enum from a table and generates its vocabulary.
///
/// A label table has rows `Variant = "label"`; a STUN error code table has rows
/// `Variant = 401 "Reason Phrase"`. Either way the macro generates:
/// - the enum (`Debug, Clone, Copy, PartialEq, Eq, Hash`), its variants numbered 0, 1, …
///   in row order, so `x as usize` indexes a plain counter array of length `COUNT`;
/// - `COUNT`, and `ALL`: every variant, in that same order;
/// - `label()`: the metric label value (for a code table, the code in decimal: `"401"`),
///   and `LABELS`, every label in order;
/// - `LISTED`: the labels joined by `", "`, a `&'static str` for metric help text;
/// - for a code table, `code()` and `reason()`, the registered reason phrase.
///
/// Two rows with the same label do not compile.
macro_rules! label_table {
    // A STUN error code table: the code is the label, and each row adds a reason phrase.
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(#[$first_meta:meta])* $first:ident = $first_code:literal $first_reason:literal
            $(, $(#[$row_meta:meta])* $row:ident = $code:literal $reason:literal)* $(,)?
        }
    ) => {
        $crate::label_table::label_table! {
            $(#[$meta])*
            $vis enum $name {
                $(#[$first_meta])* $first = $first_code
                $(, $(#[$row_meta])* $row = $code)*
            }
        }

        impl $name {
            /// The STUN error code (RFC 8489 §14.8).
            pub fn code(self) -> u16 {
                match self {
                    $name::$first => $first_code,
                    $($name::$row => $code,)*
                }
            }

            /// The registered reason phrase.
            pub fn reason(self) -> &'static str {
                match self {
                    $name::$first => $first_reason,
                    $($name::$row => $reason,)*
                }
            }
        }
    };
    // A label table.
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(#[$first_meta:meta])* $first:ident = $first_label:literal
            $(, $(#[$row_meta:meta])* $row:ident = $label:literal)* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $(#[$first_meta])* $first = 0,
            $($(#[$row_meta])* $row,)*
        }

        impl $name {
            /// How many variants there are: the length of a counter array indexed by them.
            pub const COUNT: usize = [$name::$first $(, $name::$row)*].len();
            /// Every variant, in the order of their discriminants (a counter array's index).
            pub const ALL: [$name; $name::COUNT] = [$name::$first $(, $name::$row)*];
            /// Every metric label, in the order of `ALL`.
            pub const LABELS: [&'static str; $name::COUNT] =
                [concat!($first_label) $(, concat!($label))*];
            /// The labels, joined by ", ", for metric help text.
            pub const LISTED: &'static str = concat!($first_label $(, ", ", $label)*);

            /// The metric label value.
            pub fn label(self) -> &'static str {
                match self {
                    $name::$first => concat!($first_label),
                    $($name::$row => concat!($label),)*
                }
            }
        }

        const _: () = assert!(
            $crate::label_table::distinct(&$name::LABELS),
            concat!(stringify!($name), ": two rows share a label"),
        );
    };
}
pub(crate) use label_table;

/// Whether no two labels are equal; `label_table!` checks it at compile time.
pub const fn distinct(labels: &[&str]) -> bool {
    let mut i = 0;
    while i < labels.len() {
        let mut j = i + 1;
        while j < labels.len() {
            if same(labels[i].as_bytes(), labels[j].as_bytes()) {
                return false;
            }
            j += 1;
        }
        i += 1;
    }
    true
}

const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::distinct;

    label_table! {
        /// A label table as the macro sees it: rows with and without docs.
        enum Colour {
            /// First.
            Red = "red",
            Green = "green",
            Blue = "blue",
        }
    }

    label_table! {
        enum Code {
            Low = 300 "Low Phrase",
            /// Documented.
            High = 508 "High Phrase"
        }
    }

    #[test]
    fn every_row_sits_at_its_own_index_with_its_own_label() {
        assert_eq!(Colour::COUNT, 3);
        for (i, c) in Colour::ALL.into_iter().enumerate() {
            assert_eq!(c as usize, i);
            assert_eq!(Colour::LABELS[i], c.label());
        }
        assert_eq!(Colour::Blue.label(), "blue");
        assert_eq!(Colour::LISTED, "red, green, blue");
    }

    #[test]
    fn a_code_row_is_labelled_by_its_code_and_keeps_its_phrase() {
        assert_eq!(Code::ALL, [Code::Low, Code::High]);
        assert_eq!((Code::High as usize, Code::High.code()), (1, 508));
        assert_eq!(Code::High.label(), "508");
        assert_eq!(Code::Low.reason(), "Low Phrase");
        assert_eq!(Code::LISTED, "300, 508");
    }

    #[test]
    fn a_repeated_label_is_caught() {
        assert!(distinct(&["a", "ab", "b"]));
        assert!(!distinct(&["a", "ab", "a"]));
        assert!(distinct(&[]));
    }
}
