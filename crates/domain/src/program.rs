//! Enumerations with a fixed set of members. Each has a stable snake_case wire name (used in JSON,
//! CSV and the database) and, where people read it, an Urdu label.

use serde::{Deserialize, Serialize};

use crate::UnknownName;

/// Declares a closed enumeration with its wire names, English and Urdu labels, and the
/// `FromStr`/`Display` pair that uses the wire name. One table per enum keeps the three in step.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal, { $($(#[$vmeta:meta])* $variant:ident = ($wire:literal, $en:literal, $ur:literal)),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every member, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable wire name (JSON, CSV, database).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }

            /// The English label shown to people.
            pub fn label_en(self) -> &'static str {
                match self { $($name::$variant => $en),+ }
            }

            /// The Urdu label shown to people.
            pub fn label_ur(self) -> &'static str {
                match self { $($name::$variant => $ur),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownName;

            fn from_str(value: &str) -> Result<Self, Self::Err> {
                match value {
                    $($wire => Ok($name::$variant),)+
                    _ => Err(UnknownName {
                        what: $what,
                        value: value.to_owned(),
                        expected: [$($wire),+].join(", "),
                    }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum!(
    /// The two tracks of the program.
    Track, "track", {
        /// AI Soft Skills: non-technical faculty; its target counts learners who completed.
        Soft = ("soft", "AI Soft Skills", "اے آئی سافٹ اسکلز"),
        /// AI Hard Skills: technical faculty; certification-based, its target counts certified.
        Hard = ("hard", "AI Hard Skills", "اے آئی ہارڈ اسکلز"),
    }
);

named_enum!(
    /// Pakistan's provinces and federally administered territories.
    Province, "province", {
        Punjab = ("punjab", "Punjab", "پنجاب"),
        Sindh = ("sindh", "Sindh", "سندھ"),
        KhyberPakhtunkhwa = ("khyber_pakhtunkhwa", "Khyber Pakhtunkhwa", "خیبر پختونخوا"),
        Balochistan = ("balochistan", "Balochistan", "بلوچستان"),
        Islamabad = ("islamabad", "Islamabad Capital Territory", "اسلام آباد وفاقی دارالحکومت"),
        GilgitBaltistan = ("gilgit_baltistan", "Gilgit-Baltistan", "گلگت بلتستان"),
        AzadKashmir = ("azad_kashmir", "Azad Jammu & Kashmir", "آزاد جموں و کشمیر"),
    }
);

named_enum!(
    /// Whether an institution is publicly or privately chartered.
    Sector, "sector", {
        Public = ("public", "Public", "سرکاری"),
        Private = ("private", "Private", "نجی"),
    }
);

named_enum!(
    /// What a learner is at their institution. Students arrive in later phases of the program.
    Role, "role", {
        Faculty = ("faculty", "Faculty", "فیکلٹی"),
        Student = ("student", "Student", "طالب علم"),
    }
);

named_enum!(
    /// Self-reported gender, optional on the roster.
    Gender, "gender", {
        Female = ("female", "Female", "خاتون"),
        Male = ("male", "Male", "مرد"),
        Other = ("other", "Other", "دیگر"),
    }
);

named_enum!(
    /// What an API key may do.
    AccessRole, "role", {
        /// Keys, roster, cohorts, rejections, audit: everything.
        Admin = ("admin", "Administrator", "منتظم"),
        /// Sends events for one source.
        Ingest = ("ingest", "Ingest", "اندراج"),
        /// Reads every aggregate, exactly, and cohort member status.
        Manager = ("manager", "Program manager", "پروگرام مینیجر"),
        /// Reads aggregates with small cells suppressed; every request is audited.
        Partner = ("partner", "Partner", "شراکت دار"),
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip_through_from_str_and_serde() {
        for province in Province::ALL {
            assert_eq!(province.as_str().parse::<Province>(), Ok(*province));
            let json = serde_json::to_string(province).unwrap();
            assert_eq!(json, format!("\"{}\"", province.as_str()));
        }
        for track in Track::ALL {
            assert_eq!(track.as_str().parse::<Track>(), Ok(*track));
        }
    }

    #[test]
    fn unknown_name_lists_the_accepted_names() {
        let err = "sind".parse::<Province>().unwrap_err();
        assert_eq!(err.what, "province");
        assert!(err.to_string().contains("sindh"), "{err}");
    }
}
