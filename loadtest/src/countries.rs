//! The countries a synthetic audience can come from: numbering patterns for mobile,
//! fixed-line (or toll-free) and invalid numbers, time zones, and attribute values. The
//! patterns are checked against the numbering plan by the population's tests.

/// Countries the generator knows numbering ranges for.
pub const SUPPORTED: [&str; 6] = ["CN", "US", "GB", "DE", "IN", "BR"];

/// A number pattern: a prefix (with the country code), the digits allowed first after it,
/// and how many free digits follow.
pub type Pattern = (&'static str, &'static str, usize);

pub struct Country {
    pub code: &'static str,
    pub timezone: &'static str,
    pub mobile: &'static [Pattern],
    /// Fixed-line or toll-free: valid numbers no SMS reaches.
    pub landline: &'static [Pattern],
    /// Too short or too long for the plan.
    pub invalid: &'static [Pattern],
    pub cities: &'static [&'static str],
    pub names: &'static [&'static str],
}

pub const ANY: &str = "0123456789";

pub const COUNTRIES: [Country; 6] = [
    Country {
        code: "CN",
        timezone: "Asia/Shanghai",
        mobile: &[
            ("+86130", ANY, 7),
            ("+86131", ANY, 7),
            ("+86132", ANY, 7),
            ("+86135", ANY, 7),
            ("+86136", ANY, 7),
            ("+86138", ANY, 7),
            ("+86139", ANY, 7),
            ("+86150", ANY, 7),
            ("+86158", ANY, 7),
            ("+86186", ANY, 7),
            ("+86188", ANY, 7),
            ("+86177", ANY, 7),
        ],
        landline: &[("+8610", "5678", 7), ("+8621", "56", 7)],
        invalid: &[("+86131", ANY, 8), ("+86139", ANY, 4)],
        cities: &[
            "Shanghai", "Beijing", "Shenzhen", "Hangzhou", "Chengdu", "Wuhan",
        ],
        names: &["Wei", "Fang", "Lei", "Jing", "Min", "Jun"],
    },
    Country {
        code: "US",
        timezone: "America/New_York",
        mobile: &[
            ("+1201", "2346789", 6),
            ("+1212", "2346789", 6),
            ("+1305", "2346789", 6),
            ("+1312", "2346789", 6),
            ("+1415", "2346789", 6),
            ("+1617", "2346789", 6),
            ("+1646", "2346789", 6),
            ("+1713", "2346789", 6),
            ("+1718", "2346789", 6),
            ("+1917", "2346789", 6),
        ],
        landline: &[("+1800", "2346789", 6), ("+1888", "2346789", 6)],
        invalid: &[("+1415", "01", 6), ("+1212", ANY, 4)],
        cities: &[
            "New York",
            "Chicago",
            "Los Angeles",
            "Houston",
            "Boston",
            "Miami",
        ],
        names: &["James", "Mary", "Olivia", "Noah", "Emma", "Liam"],
    },
    Country {
        code: "GB",
        timezone: "Europe/London",
        mobile: &[
            ("+44740", ANY, 6),
            ("+44741", ANY, 6),
            ("+44750", ANY, 6),
            ("+44751", ANY, 6),
            ("+44771", ANY, 6),
            ("+44780", ANY, 6),
            ("+44781", ANY, 6),
            ("+44790", ANY, 6),
            ("+44792", ANY, 6),
            ("+44795", ANY, 6),
        ],
        landline: &[("+4420", "378", 7), ("+44161", "2489", 6)],
        invalid: &[("+447", ANY, 4), ("+44790", ANY, 9)],
        cities: &[
            "London",
            "Manchester",
            "Leeds",
            "Bristol",
            "Glasgow",
            "Cardiff",
        ],
        names: &["Oliver", "Amelia", "Harry", "Isla", "George", "Ava"],
    },
    Country {
        code: "DE",
        timezone: "Europe/Berlin",
        mobile: &[
            ("+49151", ANY, 7),
            ("+49152", ANY, 7),
            ("+49157", ANY, 7),
            ("+49160", ANY, 6),
            ("+49170", ANY, 6),
            ("+49171", ANY, 6),
            ("+49175", ANY, 6),
            ("+49176", ANY, 7),
        ],
        landline: &[("+4930", "2345678", 7), ("+4989", "12345", 7)],
        invalid: &[("+49151", ANY, 2), ("+49176", ANY, 10)],
        cities: &[
            "Berlin",
            "München",
            "Hamburg",
            "Köln",
            "Frankfurt",
            "Leipzig",
        ],
        names: &["Lukas", "Mia", "Leon", "Hannah", "Finn", "Emilia"],
    },
    Country {
        code: "IN",
        timezone: "Asia/Kolkata",
        mobile: &[
            ("+91981", ANY, 6),
            ("+91987", ANY, 6),
            ("+91991", ANY, 6),
            ("+91998", ANY, 6),
            ("+91700", ANY, 6),
            ("+91810", ANY, 6),
            ("+91886", ANY, 6),
            ("+91900", ANY, 6),
        ],
        landline: &[("+9111", "2346", 7), ("+9122", "2", 7)],
        invalid: &[("+9198", ANY, 3), ("+9198", ANY, 11)],
        cities: &["Mumbai", "Delhi", "Bengaluru", "Chennai", "Pune", "Kolkata"],
        names: &["Aarav", "Ananya", "Vihaan", "Diya", "Arjun", "Isha"],
    },
    Country {
        code: "BR",
        timezone: "America/Sao_Paulo",
        mobile: &[
            ("+55119", "6789", 7),
            ("+55219", "6789", 7),
            ("+55319", "6789", 7),
            ("+55419", "6789", 7),
            ("+55519", "6789", 7),
            ("+55619", "6789", 7),
            ("+55719", "6789", 7),
            ("+55819", "6789", 7),
        ],
        landline: &[("+55113", ANY, 6), ("+55212", ANY, 6)],
        invalid: &[("+55119", ANY, 3), ("+55119", ANY, 12)],
        cities: &[
            "São Paulo",
            "Rio de Janeiro",
            "Belo Horizonte",
            "Brasília",
            "Salvador",
            "Recife",
        ],
        names: &["João", "Maria", "Pedro", "Ana", "Lucas", "Júlia"],
    },
];
