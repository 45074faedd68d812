//! Geographic area codes of multi-zone countries outside NANP, mapped to the tz zones they cover.
//!
//! Prefixes are matched, longest first, against the national significant number (the digits
//! after the country calling code). Only geographic ranges appear here; mobile ranges are
//! absent on purpose, so a mobile whose prefix says nothing about place (Russia, Australia,
//! Indonesia, ...) gets all of the country's zones. Brazil and Mexico put the area code in
//! mobile numbers too, so there mobiles are narrowed as well.
//!
//! Compiled by hand from the national numbering plans and the tzdata zone descriptions; where a
//! code's area straddles zones it lists each one.

use chrono_tz::Tz;

use super::Narrowing;

/// Russia: three-digit ABC codes of the regions (mobiles are DEF codes 9XX).
pub(super) const RU: Narrowing = Narrowing {
    region: *b"RU",
    calling_code: "7",
    mobiles_geographic: false,
    prefixes: &[
        (&["401"], &[Tz::Europe__Kaliningrad]),
        (
            &[
                // Moscow, St Petersburg and the central, north-western and southern regions
                "495", "496", "498", "499", "812", "811", "813", "814", "815", "816", "817", "818",
                "820", "821", "831", "834", "835", "836", "841", "843", "847", "855", "861", "862",
                "863", "865", "866", "867", "871", "872", "873", "877", "878", "879", "471", "472",
                "473", "474", "475", "481", "482", "483", "484", "485", "486", "487", "491", "492",
                "493", "494",
            ],
            &[Tz::Europe__Moscow],
        ),
        (&["833"], &[Tz::Europe__Kirov]),
        (&["844"], &[Tz::Europe__Volgograd]),
        (&["851"], &[Tz::Europe__Astrakhan]),
        (&["845"], &[Tz::Europe__Saratov]),
        (&["842"], &[Tz::Europe__Ulyanovsk]),
        (&["341", "846", "848"], &[Tz::Europe__Samara]),
        (
            &[
                "342", "343", "345", "346", "347", "349", "351", "352", "353",
            ],
            &[Tz::Asia__Yekaterinburg],
        ),
        (&["381"], &[Tz::Asia__Omsk]),
        (&["383"], &[Tz::Asia__Novosibirsk]),
        (&["385", "388"], &[Tz::Asia__Barnaul]),
        (&["382"], &[Tz::Asia__Tomsk]),
        (&["384"], &[Tz::Asia__Novokuznetsk]),
        (&["390", "391", "394"], &[Tz::Asia__Krasnoyarsk]),
        (&["301", "395"], &[Tz::Asia__Irkutsk]),
        (&["302"], &[Tz::Asia__Chita]),
        (&["416"], &[Tz::Asia__Yakutsk]),
        // Sakha (Yakutia) spans three zones.
        (
            &["411"],
            &[
                Tz::Asia__Yakutsk,
                Tz::Asia__Khandyga,
                Tz::Asia__UstNera,
                Tz::Asia__Srednekolymsk,
            ],
        ),
        (&["421", "423", "426"], &[Tz::Asia__Vladivostok]),
        (&["424"], &[Tz::Asia__Sakhalin]),
        (&["413"], &[Tz::Asia__Magadan]),
        (&["415"], &[Tz::Asia__Kamchatka]),
        (&["427"], &[Tz::Asia__Anadyr]),
    ],
};

/// Australia: the single-digit area codes, refined where a state has its own zone.
pub(super) const AU: Narrowing = Narrowing {
    region: *b"AU",
    calling_code: "61",
    mobiles_geographic: false,
    prefixes: &[
        // NSW and ACT; Lord Howe Island
        (&["2"], &[Tz::Australia__Sydney]),
        (&["26563"], &[Tz::Australia__Lord_Howe]),
        // Victoria; Tasmania
        (&["3"], &[Tz::Australia__Melbourne]),
        (&["36"], &[Tz::Australia__Hobart]),
        (&["7"], &[Tz::Australia__Brisbane]),
        // SA, NT, WA and far-west NSW share 08.
        (
            &["8"],
            &[
                Tz::Australia__Adelaide,
                Tz::Australia__Darwin,
                Tz::Australia__Broken_Hill,
                Tz::Australia__Perth,
                Tz::Australia__Eucla,
            ],
        ),
        (
            &["87", "88"],
            &[Tz::Australia__Adelaide, Tz::Australia__Darwin],
        ),
        (&["880"], &[Tz::Australia__Broken_Hill]),
        (&["889"], &[Tz::Australia__Darwin]),
        (&["89"], &[Tz::Australia__Perth, Tz::Australia__Eucla]),
    ],
};

/// Brazil: two-digit DDD codes, which mobiles carry too.
pub(super) const BR: Narrowing = Narrowing {
    region: *b"BR",
    calling_code: "55",
    mobiles_geographic: true,
    prefixes: &[
        // SP, RJ, ES, MG, PR, SC, RS, DF, GO
        (
            &[
                "11", "12", "13", "14", "15", "16", "17", "18", "19", "21", "22", "24", "27", "28",
                "31", "32", "33", "34", "35", "37", "38", "41", "42", "43", "44", "45", "46", "47",
                "48", "49", "51", "53", "54", "55", "61", "62", "64",
            ],
            &[Tz::America__Sao_Paulo],
        ),
        (&["63"], &[Tz::America__Araguaina]),
        (&["65", "66"], &[Tz::America__Cuiaba]),
        (&["67"], &[Tz::America__Campo_Grande]),
        (&["68"], &[Tz::America__Rio_Branco]),
        (&["69"], &[Tz::America__Porto_Velho]),
        (&["71", "73", "74", "75", "77"], &[Tz::America__Bahia]),
        (&["79", "82"], &[Tz::America__Maceio]),
        (&["81", "87"], &[Tz::America__Recife]),
        // Fernando de Noronha landlines
        (&["813619"], &[Tz::America__Noronha]),
        (
            &["83", "84", "85", "86", "88", "89", "98", "99"],
            &[Tz::America__Fortaleza],
        ),
        (&["91", "94", "96"], &[Tz::America__Belem]),
        (&["93"], &[Tz::America__Santarem]),
        (&["92"], &[Tz::America__Manaus]),
        (&["97"], &[Tz::America__Manaus, Tz::America__Eirunepe]),
        (&["95"], &[Tz::America__Boa_Vista]),
    ],
};

/// Mexico: area codes of the main cities (ten-digit numbers, mobiles included).
pub(super) const MX: Narrowing = Narrowing {
    region: *b"MX",
    calling_code: "52",
    mobiles_geographic: true,
    prefixes: &[
        (
            &[
                "55", "56", "33", "222", "228", "229", "246", "312", "314", "341", "415", "442",
                "443", "444", "449", "461", "462", "473", "477", "492", "722", "744", "747", "771",
                "777", "921", "951", "961", "962", "967", "993",
            ],
            &[Tz::America__Mexico_City],
        ),
        // Puerto Vallarta and Bahía de Banderas share a code across the Jalisco/Nayarit line.
        (
            &["322"],
            &[Tz::America__Mexico_City, Tz::America__Bahia_Banderas],
        ),
        (&["938", "981", "985", "999"], &[Tz::America__Merida]),
        (&["983", "984", "987", "998"], &[Tz::America__Cancun]),
        (
            &["81", "618", "831", "833", "834", "844", "866", "871"],
            &[Tz::America__Monterrey],
        ),
        (
            &["867", "868", "877", "878", "899"],
            &[Tz::America__Matamoros],
        ),
        (
            &["614", "625", "627", "639", "648"],
            &[Tz::America__Chihuahua],
        ),
        (&["656"], &[Tz::America__Ciudad_Juarez]),
        (&["626"], &[Tz::America__Ojinaga]),
        (
            &["311", "612", "613", "624", "667", "668", "669", "687"],
            &[Tz::America__Mazatlan],
        ),
        (
            &[
                "622", "631", "633", "637", "638", "642", "644", "653", "662",
            ],
            &[Tz::America__Hermosillo],
        ),
        (
            &["616", "646", "661", "664", "665", "686"],
            &[Tz::America__Tijuana],
        ),
    ],
};

/// Indonesia: landline area codes by island group (mobiles are 8XX).
pub(super) const ID: Narrowing = Narrowing {
    region: *b"ID",
    calling_code: "62",
    mobiles_geographic: false,
    prefixes: &[
        // Java, Sumatra, West and Central Kalimantan: WIB
        (&["2", "3", "6", "7"], &[Tz::Asia__Jakarta]),
        (&["5"], &[Tz::Asia__Pontianak, Tz::Asia__Makassar]),
        (&["53", "56"], &[Tz::Asia__Pontianak]),
        // Bali, Nusa Tenggara, Sulawesi, South/East/North Kalimantan: WITA
        (
            &["36", "37", "38", "4", "51", "54", "55"],
            &[Tz::Asia__Makassar],
        ),
        // Maluku and Papua: WIT
        (&["9"], &[Tz::Asia__Jayapura]),
    ],
};

/// Spain: the Canary Islands' codes within the 8XX/9XX landline ranges.
pub(super) const ES: Narrowing = Narrowing {
    region: *b"ES",
    calling_code: "34",
    mobiles_geographic: false,
    prefixes: &[
        (&["8", "9"], &[Tz::Europe__Madrid, Tz::Africa__Ceuta]),
        (&["822", "828", "922", "928"], &[Tz::Atlantic__Canary]),
    ],
};

/// Portugal: Madeira and the Azores within the 2XX landline range.
pub(super) const PT: Narrowing = Narrowing {
    region: *b"PT",
    calling_code: "351",
    mobiles_geographic: false,
    prefixes: &[
        (&["2"], &[Tz::Europe__Lisbon]),
        (&["291"], &[Tz::Atlantic__Madeira]),
        (&["292", "295", "296"], &[Tz::Atlantic__Azores]),
    ],
};

/// New Zealand: the Chatham Islands within the 03 area.
pub(super) const NZ: Narrowing = Narrowing {
    region: *b"NZ",
    calling_code: "64",
    mobiles_geographic: false,
    prefixes: &[
        (&["3", "4", "6", "7", "9"], &[Tz::Pacific__Auckland]),
        (&["3305"], &[Tz::Pacific__Chatham]),
    ],
};

/// Malaysia: Sabah and Sarawak (08X) against the peninsula.
pub(super) const MY: Narrowing = Narrowing {
    region: *b"MY",
    calling_code: "60",
    mobiles_geographic: false,
    prefixes: &[
        (&["3", "4", "5", "6", "7", "9"], &[Tz::Asia__Kuala_Lumpur]),
        (&["8"], &[Tz::Asia__Kuching]),
    ],
};

/// China keeps one official zone; Xinjiang landlines (090X/099X) may also use local time.
pub(super) const CN: Narrowing = Narrowing {
    region: *b"CN",
    calling_code: "86",
    mobiles_geographic: false,
    prefixes: &[(&["90", "99"], &[Tz::Asia__Shanghai, Tz::Asia__Urumqi])],
};
