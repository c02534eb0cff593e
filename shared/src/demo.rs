//! The demo club, built from the two seed articles (autumn 2025): Smara and
//! its partner cities, the agreements approved on 30 October and signed on
//! 31 October 2025, the consultative meeting of 30 October with its
//! decision, the council and the people named.
//!
//! Names whose transliteration is uncertain keep their Arabic form beside
//! them and a `(?)` in the Latin one, as the club's own notes do.

use serde_json::{Value, json};

use crate::DocumentId;
use crate::record::{Commit, EditError, Kind, RecordDoc};

/// A record of the demo club with its id.
#[derive(Debug, Clone)]
pub struct DemoRecord {
    pub id: DocumentId,
    pub doc: RecordDoc,
}

/// 30 October 2025, 15:00 in Smara (UTC+1), when the records were first written.
pub const WRITTEN_AT: i64 = 1_761_832_800;

struct CityData {
    ar: &'static str,
    fr: &'static str,
    en: &'static str,
    country: &'static str,
    code: &'static str,
}

const SMARA: CityData = CityData {
    ar: "السمارة",
    fr: "Smara",
    en: "Smara",
    country: "Morocco",
    code: "MA",
};
const AMGALA: CityData = CityData {
    ar: "أمگالة",
    fr: "Amgala",
    en: "Amgala",
    country: "Morocco",
    code: "MA",
};

/// The partner cities whose agreements were approved on 30 October 2025.
const PARTNERS: &[CityData] = &[
    CityData {
        ar: "دكار",
        fr: "Dakar",
        en: "Dakar",
        country: "Senegal",
        code: "SN",
    },
    CityData {
        ar: "نجامينا",
        fr: "N'Djamena",
        en: "N'Djamena",
        country: "Chad",
        code: "TD",
    },
    CityData {
        ar: "نيامي",
        fr: "Niamey",
        en: "Niamey",
        country: "Niger",
        code: "NE",
    },
    CityData {
        ar: "بورتو نوفو",
        fr: "Porto-Novo",
        en: "Porto-Novo",
        country: "Benin",
        code: "BJ",
    },
    CityData {
        ar: "تمبكتو",
        fr: "Tombouctou",
        en: "Timbuktu",
        country: "Mali",
        code: "ML",
    },
    CityData {
        ar: "واغادوغو",
        fr: "Ouagadougou",
        en: "Ouagadougou",
        country: "Burkina Faso",
        code: "BF",
    },
    CityData {
        ar: "بانجول",
        fr: "Banjul",
        en: "Banjul",
        country: "Gambia",
        code: "GM",
    },
    CityData {
        ar: "فيجاياوادا",
        fr: "Vijayawada",
        en: "Vijayawada",
        country: "India",
        code: "IN",
    },
    CityData {
        ar: "ميبلطن",
        fr: "Mableton",
        en: "Mableton",
        country: "United States",
        code: "US",
    },
    CityData {
        ar: "أورل",
        fr: "Orel (?)",
        en: "Orel (?)",
        country: "United States",
        code: "US",
    },
    CityData {
        ar: "أوكلاند",
        fr: "Oakland",
        en: "Oakland",
        country: "United States",
        code: "US",
    },
    CityData {
        ar: "ميامي الشمالية",
        fr: "North Miami",
        en: "North Miami",
        country: "United States",
        code: "US",
    },
    CityData {
        ar: "الساحل الشمالي",
        fr: "North Shore (?)",
        en: "North Shore (?)",
        country: "United States",
        code: "US",
    },
];

const MINUTES: &str = "احتضنت ملحقة جماعة السمارة بحي السلام زوال يوم الخميس 30 أكتوبر 2025 لقاءً تشاورياً \
ترأسه المهندس مولاي إبراهيم الشريف، رئيس جماعة السمارة، بحضور السيد إبراهيم بوتوميلات عامل إقليم السمارة، \
ورؤساء المجالس المنتخبة والبرلمانيين وعدد من الأطر المحلية.\n\
Ouverture : allocution du gouverneur de la province de Smara sur la diplomatie parallèle des collectivités territoriales.\n\
Interventions : M. Moulay Ibrahim Cherif (Smara), Mme Fatima Saida (Amgala).\n\
Décision : approbation de la signature des accords de jumelage le vendredi 31 octobre 2025.\n\
Clôture : annonce du lancement du Club international de Smara des villes jumelées.";

const PURPOSE: &str = "Institutionalise twinning and municipal partnerships under international law and good \
governance; a permanent frame for consultation, coordination and joint action between Moroccan, African and \
international communes.\n\
مأسسة التوأمة وشراكات البلديات وفق القانون الدولي ومعايير الحكامة الجيدة.";

/// The club's name in its three languages.
fn club_name() -> Value {
    json!({
        "ar": "نادي السمارة الدولي للمدن المتوأمة",
        "fr": "Club international de Smara des villes jumelées",
        "en": "Smara International Club of Twinned Cities",
    })
}

/// The club record alone, with nothing in its index: what a server started
/// without the demo holds, so that every record phones make is listed in
/// it and reaches the other phones.
pub fn empty_club() -> Result<DemoRecord, EditError> {
    Ok(DemoRecord {
        id: DocumentId::random(),
        doc: RecordDoc::create(
            Kind::Club,
            &json!({"name": club_name(), "index": {}}),
            &Commit::new("New club", WRITTEN_AT),
        )?,
    })
}

/// Builds every record of the demo club; the club itself comes first.
pub fn build() -> Result<Vec<DemoRecord>, EditError> {
    let mut out = Vec::new();
    let mut index = serde_json::Map::new();
    let commit = |message: &str| Commit::new(message, WRITTEN_AT);
    let add = |kind: Kind,
               fields: Value,
               out: &mut Vec<DemoRecord>,
               index: &mut serde_json::Map<String, Value>| {
        let doc = RecordDoc::create(kind, &fields, &commit(&format!("Demo: {kind}")))?;
        let id = DocumentId::random();
        let title = fields.get(kind.title_field()).cloned().unwrap_or(json!({}));
        let mut entry = json!({"kind": kind.as_str(), "title": title});
        for key in ["city", "owner_city"] {
            if let Some(city) = fields.get(key) {
                entry["city"] = city.clone();
            }
        }
        if let Some(status) = fields.get("status").or(fields.get("twinning_status")) {
            entry["status"] = status.clone();
        }
        index.insert(id.to_string(), entry);
        out.push(DemoRecord { id, doc });
        Ok::<DocumentId, EditError>(id)
    };
    let url = |id: DocumentId| id.url().to_string();
    let city = |c: &CityData, status: &str| {
        json!({
            "name": {"ar": c.ar, "fr": c.fr, "en": c.en},
            "country": c.country,
            "country_code": c.code,
            "twinning_status": status,
        })
    };

    let smara = add(Kind::City, city(&SMARA, "active"), &mut out, &mut index)?;
    let amgala = add(Kind::City, city(&AMGALA, "active"), &mut out, &mut index)?;
    let person = |ar: &str, fr: &str, title: Value, city: Option<DocumentId>, roles: &[&str]| {
        json!({
            "name": {"ar": ar, "fr": fr, "en": fr},
            "title": title,
            "city": city.map(url),
            "roles": roles,
        })
    };
    let cherif = add(
        Kind::Person,
        person(
            "مولاي إبراهيم الشريف",
            "Moulay Ibrahim Cherif",
            json!({"ar": "رئيس الجماعة الحضرية للسمارة", "fr": "Président de la commune urbaine de Smara", "en": "President of the urban commune of Smara"}),
            Some(smara),
            &["mayor", "council"],
        ),
        &mut out,
        &mut index,
    )?;
    let governor = add(
        Kind::Person,
        person(
            "إبراهيم بوتوميلات",
            "Ibrahim Boutoumilat",
            json!({"ar": "عامل إقليم السمارة", "fr": "Gouverneur de la province de Smara", "en": "Governor of Smara province"}),
            Some(smara),
            &["governor"],
        ),
        &mut out,
        &mut index,
    )?;
    let saida = add(
        Kind::Person,
        person(
            "فاطمة سيدة",
            "Fatima Saida",
            json!({"ar": "رئيسة جماعة أمگالة", "fr": "Présidente de la commune d'Amgala", "en": "President of the commune of Amgala"}),
            Some(amgala),
            &["mayor", "council"],
        ),
        &mut out,
        &mut index,
    )?;

    let mut partner_ids = Vec::new();
    for c in PARTNERS {
        partner_ids.push((c, add(Kind::City, city(c, "signed"), &mut out, &mut index)?));
    }
    let partner = |en: &str| {
        partner_ids
            .iter()
            .find(|(c, _)| c.en == en)
            .map(|(_, id)| *id)
    };
    let tandina = add(
        Kind::Person,
        person(
            "يحيى تندينا",
            "Yahya Tandina",
            json!({"ar": "عمدة تمبكتو", "fr": "Maire de Tombouctou", "en": "Mayor of Timbuktu"}),
            partner("Timbuktu"),
            &["mayor", "council"],
        ),
        &mut out,
        &mut index,
    )?;
    let choudhary = add(
        Kind::Person,
        person(
            "بانكاج شودري",
            "Pankaj Choudhary",
            json!({"ar": "ممثل بلدية فيجاياوادا", "fr": "Représentant de la municipalité de Vijayawada", "en": "Representative of the municipality of Vijayawada"}),
            partner("Vijayawada"),
            &["representative", "council"],
        ),
        &mut out,
        &mut index,
    )?;

    let mut agreement_ids = Vec::new();
    for (c, id) in &partner_ids {
        let a = add(
            Kind::Agreement,
            json!({
                "title": {
                    "ar": format!("اتفاقية توأمة السمارة و{}", c.ar),
                    "fr": format!("Accord de jumelage Smara – {}", c.fr),
                    "en": format!("Twinning agreement Smara – {}", c.en),
                },
                "parties": [url(smara), url(*id)],
                "domains": ["economic", "cultural", "scientific", "environmental"],
                "approved_on": "2025-10-30",
                "signed_on": "2025-10-31",
                "status": "signed",
                "commitments": [
                    {"text": "Exchange of expertise in local development", "status": "open"},
                    {"text": "Cultural and youth exchanges", "status": "open"},
                ],
            }),
            &mut out,
            &mut index,
        )?;
        agreement_ids.push(a);
    }

    add(
        Kind::Meeting,
        json!({
            "title": {
                "ar": "اللقاء التشاوري حول اتفاقيات التوأمة",
                "fr": "Réunion consultative sur les accords de jumelage",
                "en": "Consultative meeting on the twinning agreements",
            },
            "date": "2025-10-30",
            "time": "afternoon",
            "place": {"ar": "ملحقة جماعة السمارة، حي السلام", "fr": "Annexe de la commune de Smara, quartier Hay Salam", "en": "Smara commune annex, Hay Salam district"},
            "city": url(smara),
            "chair": url(cherif),
            "attendees": [url(cherif), url(governor), url(saida)],
            "guests": "Heads of elected councils, members of parliament, local officials",
            "agenda": [
                {"title": "Opening address by the governor of Smara province"},
                {"title": "The twinning agreements with African and international cities"},
                {"title": "Announcement of the Smara International Club of Twinned Cities"},
            ],
            "minutes": MINUTES,
            "decisions": [
                {"text": "Approve the signing of the twinning agreements on Friday 31 October 2025", "outcome": "adopted"},
                {"text": "Launch the Smara International Club of Twinned Cities", "outcome": "adopted"},
            ],
            "adopted": true,
        }),
        &mut out,
        &mut index,
    )?;

    add(
        Kind::Project,
        json!({
            "title": {
                "ar": "تتبع التنزيل الميداني لاتفاقيات التوأمة",
                "fr": "Suivi de la mise en œuvre des accords de jumelage",
                "en": "Follow-up of the twinning agreements on the ground",
            },
            "agreement": url(agreement_ids[0]),
            "domain": "governance",
            "owner_city": url(smara),
            "status": "active",
            "starts_on": "2025-10-31",
            "objectives": "Follow how each twinning agreement is carried out on the ground.\nتتبع تنزيل الاتفاقيات ميدانياً.",
            "milestones": [
                {"title": "Sign the twinning agreements", "due": "2025-10-31", "status": "done", "done_on": "2025-10-31", "owner": url(cherif)},
                {"title": "Constitute the International Coordination Council", "due": "2026-01-31", "status": "in_progress"},
                {"title": "First report on each agreement", "due": "2026-06-30", "status": "pending"},
            ],
        }),
        &mut out,
        &mut index,
    )?;

    add(
        Kind::Report,
        json!({
            "title": {"fr": "Lancement du club : compte rendu", "en": "Launch of the club: report", "ar": "إطلاق النادي: تقرير"},
            "report_type": "visit",
            "author": url(cherif),
            "city": url(smara),
            "date": "2025-10-31",
            "text": "Le club réunit des maires de villes africaines, américaines et indiennes. \
        يحيى تندينا، عمدة تمبكتو: السمارة «مدينة لجميع عمداء البلديات في العالم».",
            "links": [url(cherif), url(tandina), url(choudhary)],
        }),
        &mut out,
        &mut index,
    )?;

    let council = [(cherif, smara, "Host commune"), (saida, amgala, "Member"), (tandina, partner("Timbuktu").unwrap_or(smara), "Member"), (choudhary, partner("Vijayawada").unwrap_or(smara), "Member")]
        .iter()
        .map(|(p, c, role)| json!({"person": url(*p), "city": url(*c), "role": role, "since": "2025-10-30"}))
        .collect::<Vec<_>>();
    let club = RecordDoc::create(
        Kind::Club,
        &json!({
            "name": club_name(),
            "founded_on": "2025-10-30",
            "seat": url(smara),
            "purpose": PURPOSE,
            "council": council,
            "index": index,
        }),
        &commit("Demo: club"),
    )?;
    out.insert(
        0,
        DemoRecord {
            id: DocumentId::random(),
            doc: club,
        },
    );
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::record::Record;

    #[test]
    fn every_demo_record_is_valid_and_indexed() {
        let records = build().unwrap();
        let Ok(Record::Club(club)) = records[0].doc.record() else {
            panic!("the first record is the club")
        };
        assert_eq!(club.index.len(), records.len() - 1);
        for r in &records[1..] {
            let typed = r.doc.record().unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(club.index[&r.id.to_string()].kind, typed.kind());
        }
        // Smara, Amgala and the thirteen partner cities.
        let cities = records
            .iter()
            .filter(|r| r.doc.kind() == Some(Kind::City))
            .count();
        assert_eq!(cities, 15);
        let signed = records
            .iter()
            .filter_map(|r| match r.doc.record() {
                Ok(Record::Agreement(a)) => Some(a),
                _ => None,
            })
            .filter(|a| {
                a.signed_on.as_deref() == Some("2025-10-31")
                    && a.approved_on.as_deref() == Some("2025-10-30")
            })
            .count();
        assert_eq!(signed, 13);
    }

    #[test]
    fn the_consultative_meeting_holds_its_decision() {
        let records = build().unwrap();
        let meeting = records
            .iter()
            .find_map(|r| match r.doc.record() {
                Ok(Record::Meeting(m)) => Some(m),
                _ => None,
            })
            .unwrap();
        assert_eq!(meeting.date, "2025-10-30");
        assert!(meeting.adopted);
        assert!(meeting.decisions[0].text.contains("31 October 2025"));
        assert!(meeting.minutes.contains("مولاي إبراهيم الشريف"));
    }
}
