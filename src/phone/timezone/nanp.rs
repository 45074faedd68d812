//! NANP area codes of the United States and Canada mapped to the tz zones they cover.
//!
//! Every US and Canadian number, mobile or not, begins with a geographic area code (apart from
//! the non-geographic 5XX/6XX/8XX/900 codes), so an area code is the best time-zone evidence a
//! number carries. Codes that straddle a zone boundary list every zone they touch; codes missing
//! here (new overlays, non-geographic codes) fall back to all of the country's zones.
//!
//! Compiled by hand from the NANPA area-code assignments and the tzdata zone descriptions.

use chrono_tz::Tz;

use super::Narrowing;

// Short aliases keep the tables readable.
const NY: Tz = Tz::America__New_York;
const CHI: Tz = Tz::America__Chicago;
const DEN: Tz = Tz::America__Denver;
const PHX: Tz = Tz::America__Phoenix;
const LA: Tz = Tz::America__Los_Angeles;
const BOISE: Tz = Tz::America__Boise;
const DET: Tz = Tz::America__Detroit;
const IND: Tz = Tz::America__Indiana__Indianapolis;
const LOU: Tz = Tz::America__Kentucky__Louisville;

/// United States, grouped by zone set.
pub(super) const US: Narrowing = Narrowing {
    region: *b"US",
    calling_code: "1",
    mobiles_geographic: true,
    prefixes: &[
        (
            &[
                // CT, DE, DC, GA, ME, MD, MA, NH, NJ
                "203", "475", "860", "959", "302", "202", "771", "229", "404", "470", "478", "678",
                "706", "762", "770", "912", "943", "207", "227", "240", "301", "410", "443", "667",
                "339", "351", "413", "508", "617", "774", "781", "857", "978", "603", "201", "551",
                "609", "640", "732", "848", "856", "862", "908", "973", // NY, NC, OH
                "212", "315", "332", "347", "363", "516", "518", "585", "607", "631", "646", "680",
                "716", "718", "838", "845", "914", "917", "929", "934", "252", "336", "472", "704",
                "743", "828", "910", "919", "980", "984", "216", "220", "234", "326", "330", "380",
                "419", "440", "513", "567", "614", "740", "937",
                // PA, RI, SC, VT, VA, WV
                "215", "223", "267", "272", "412", "445", "484", "570", "582", "610", "717", "724",
                "814", "835", "878", "401", "803", "839", "843", "854", "864", "802", "276", "434",
                "540", "571", "703", "757", "804", "826", "948", "304", "681",
                // FL (peninsula), KY (Lexington), TN (Knoxville)
                "239", "305", "321", "352", "386", "407", "561", "645", "656", "689", "727", "754",
                "772", "786", "813", "863", "904", "941", "954", "859", "865",
            ],
            &[NY],
        ),
        // Michigan; the Upper Peninsula's border counties keep Central time.
        (
            &[
                "231", "248", "269", "313", "517", "586", "616", "734", "810", "947", "989",
            ],
            &[DET],
        ),
        (&["906"], &[DET, Tz::America__Menominee]),
        // Indiana: the centre and north-east are Eastern; the north-west corner is Central.
        (&["260", "317", "463", "765"], &[IND]),
        (
            &["574"],
            &[
                IND,
                Tz::America__Indiana__Knox,
                Tz::America__Indiana__Winamac,
            ],
        ),
        (
            &["812", "930"],
            &[
                IND,
                Tz::America__Indiana__Vincennes,
                Tz::America__Indiana__Petersburg,
                Tz::America__Indiana__Marengo,
                Tz::America__Indiana__Vevay,
                Tz::America__Indiana__Tell_City,
                CHI,
            ],
        ),
        (&["219"], &[CHI]),
        // Kentucky and Tennessee straddle the Eastern/Central line.
        (&["502"], &[LOU]),
        (&["606"], &[NY, Tz::America__Kentucky__Monticello]),
        (&["270", "364"], &[CHI, NY, LOU]),
        (&["423", "931"], &[NY, CHI]),
        // Florida panhandle: Central west of the Apalachicola river.
        (&["448", "850"], &[CHI, NY]),
        (
            &[
                // AL, AR, IL
                "205", "251", "256", "334", "659", "938", "327", "479", "501", "870", "217", "224",
                "309", "312", "331", "447", "464", "618", "630", "708", "730", "773", "779", "815",
                "847", "872", // IA, KS (east), LA, MN, MS, MO
                "319", "515", "563", "641", "712", "316", "913", "225", "318", "337", "504", "985",
                "218", "320", "507", "612", "651", "763", "952", "228", "601", "662", "769", "314",
                "417", "557", "573", "636", "660", "816",
                // NE (east), OK, TN (middle and west)
                "402", "531", "405", "539", "572", "580", "918", "615", "629", "731", "901",
                // TX (all but El Paso), WI
                "210", "214", "254", "281", "325", "346", "361", "409", "430", "432", "469", "512",
                "682", "713", "726", "737", "806", "817", "830", "832", "903", "936", "940", "945",
                "956", "972", "979", "262", "274", "353", "414", "534", "608", "715", "920",
            ],
            &[CHI],
        ),
        // The Plains states' western counties keep Mountain time.
        (&["308", "605", "620", "785"], &[CHI, DEN]),
        (
            &["701"],
            &[
                CHI,
                Tz::America__North_Dakota__Center,
                Tz::America__North_Dakota__New_Salem,
                Tz::America__North_Dakota__Beulah,
                DEN,
            ],
        ),
        // CO, NM, UT, WY, MT, El Paso
        (
            &[
                "303", "719", "720", "970", "983", "505", "575", "385", "435", "801", "307", "406",
                "915",
            ],
            &[DEN],
        ),
        (&["208", "986"], &[BOISE, LA]),
        // Arizona keeps standard time all year, except the Navajo Nation.
        (&["480", "520", "602", "623"], &[PHX]),
        (&["928"], &[PHX, DEN]),
        // CA, NV, OR, WA
        (
            &[
                "209", "213", "279", "310", "323", "341", "350", "408", "415", "424", "442", "510",
                "530", "559", "562", "619", "626", "628", "650", "657", "661", "669", "707", "714",
                "747", "760", "805", "818", "820", "831", "840", "858", "909", "916", "925", "949",
                "951", "702", "725", "503", "971", "206", "253", "360", "425", "509", "564",
            ],
            &[LA],
        ),
        // West Wendover (NV) and Malheur County (OR) keep Mountain time.
        (&["775"], &[LA, DEN]),
        (&["458", "541"], &[LA, BOISE]),
        (
            &["907"],
            &[
                Tz::America__Anchorage,
                Tz::America__Juneau,
                Tz::America__Sitka,
                Tz::America__Metlakatla,
                Tz::America__Yakutat,
                Tz::America__Nome,
                Tz::America__Adak,
            ],
        ),
        (&["808"], &[Tz::Pacific__Honolulu]),
    ],
};

/// Canada, grouped by zone set.
pub(super) const CA: Narrowing = Narrowing {
    region: *b"CA",
    calling_code: "1",
    mobiles_geographic: true,
    prefixes: &[
        // Newfoundland and Labrador
        (
            &["709", "879"],
            &[Tz::America__St_Johns, Tz::America__Goose_Bay],
        ),
        // Nova Scotia, Prince Edward Island; New Brunswick
        (
            &["782", "902"],
            &[Tz::America__Halifax, Tz::America__Glace_Bay],
        ),
        (&["428", "506"], &[Tz::America__Moncton]),
        // Eastern Quebec reaches the Atlantic-time Lower North Shore.
        (
            &["367", "418", "581"],
            &[Tz::America__Toronto, Tz::America__BlancSablon],
        ),
        (
            &[
                // Quebec
                "263", "354", "438", "450", "468", "514", "579", "819", "873",
                // Ontario (south and east)
                "226", "249", "289", "343", "365", "382", "416", "437", "519", "548", "613", "647",
                "683", "705", "742", "753", "905", "942",
            ],
            &[Tz::America__Toronto],
        ),
        // North-western Ontario: Central west of Thunder Bay, Atikokan on standard time.
        (
            &["807"],
            &[
                Tz::America__Toronto,
                Tz::America__Winnipeg,
                Tz::America__Atikokan,
            ],
        ),
        (&["204", "431", "584"], &[Tz::America__Winnipeg]),
        // Saskatchewan; Lloydminster keeps Alberta time.
        (
            &["306", "474", "639"],
            &[
                Tz::America__Regina,
                Tz::America__Swift_Current,
                Tz::America__Edmonton,
            ],
        ),
        (
            &["368", "403", "587", "780", "825"],
            &[Tz::America__Edmonton],
        ),
        (&["604"], &[Tz::America__Vancouver]),
        // Province-wide BC codes also reach the Mountain-time east and north-east.
        (
            &["236", "250", "257", "672", "778"],
            &[
                Tz::America__Vancouver,
                Tz::America__Edmonton,
                Tz::America__Creston,
                Tz::America__Dawson_Creek,
                Tz::America__Fort_Nelson,
            ],
        ),
        // Yukon, Northwest Territories, Nunavut
        (
            &["867"],
            &[
                Tz::America__Whitehorse,
                Tz::America__Dawson,
                Tz::America__Inuvik,
                Tz::America__Edmonton,
                Tz::America__Cambridge_Bay,
                Tz::America__Rankin_Inlet,
                Tz::America__Resolute,
                Tz::America__Iqaluit,
                Tz::America__Atikokan,
            ],
        ),
    ],
};
