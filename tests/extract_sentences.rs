//! The attribute extractor on real report sentences, labelled by hand with
//! the pneumonia status and the attributes a radiologist reads from each
//! (OpenI / Indiana reports of ../shared/data/openi/NLMCXR_reports.tgz,
//! FINDINGS and IMPRESSION; COVID-19 dataset clinical notes of
//! ../shared/data/covid-*/metadata.csv). The sentences are quoted here with
//! their source; the data files stay outside the repository.
//!
//! Status, as labelled: affirmed = pneumonia (infection, pneumonitis) is
//! stated; uncertain = pneumonia or its finding is possible, suspected or one
//! of a differential ("atelectasis versus pneumonia"); negated = every
//! pneumonia-related finding is stated absent; absent = no such finding, or a
//! finding (opacity, consolidation, ...) described without a word on
//! pneumonia. Attributes: the canonical attributes of the vocabulary that
//! describe a pneumonia-related finding that is not negated.
//!
//! Acceptance: attribute F1 >= 0.9 and status accuracy >= 0.9; the test
//! prints precision, recall and every failure.

use engine::text::extract::{Extractor, Status};
use engine::text::vocab::Vocabulary;
use std::collections::BTreeSet;

const CASES: &[(&str, &str, Status, &str)] = &[
    ("OpenI 2812.xml", "XXXX patchy right lower lobe infiltrate consistent with pneumonia", Status::Affirmed, "lower patchy right"),
    ("OpenI 3786.xml", "Bilateral increasing consolidations, consistent with multifocal pneumonia", Status::Affirmed, "bilateral multifocal"),
    ("OpenI 1422.xml", "Interval development of bilateral upper lobe consolidation, right greater than left, XXXX representing pneumonia", Status::Affirmed, "bilateral upper"),
    ("OpenI 3878.xml", "In the appropriate clinical setting this appearance is compatible with pneumonia", Status::Affirmed, ""),
    ("OpenI 2370.xml", "Left lower lobe airspace disease consistent with pneumonia", Status::Affirmed, "left lower"),
    ("OpenI 1157.xml", "Left upper lobe pneumonia", Status::Affirmed, "left upper"),
    ("OpenI 2422.xml", "Bibasilar pneumonia", Status::Affirmed, "basal bilateral"),
    ("OpenI 3968.xml", "Left lower lobe XXXX segment pneumonia", Status::Affirmed, "left lower"),
    ("OpenI 3895.xml", "Left lower lobe opacities XXXX representing pneumonia", Status::Affirmed, "left lower"),
    ("OpenI 1699.xml", "Left lower lobe, superior segment, airspace consolidation, radiographic appearance most typical for pneumonia", Status::Affirmed, "left lower"),
    ("OpenI 808.xml", "Left lower lobe pneumonia and minimal scarring or subsegmental atelectasis in the right lung base", Status::Affirmed, "left lower"),
    ("OpenI 1226.xml", "Right lower lobe pneumonia", Status::Affirmed, "lower right"),
    ("OpenI 973.xml", "A subtle infiltrate cannot be excluded", Status::Uncertain, "subtle"),
    ("OpenI 1193.xml", "Bibasilar airspace disease may represent infection or mild edema", Status::Uncertain, "basal bilateral"),
    ("COVID-19 metadata.csv, covid-19-pneumonia-23-day1.jpg", "Patchy consolidation in peripheral right midzone", Status::Absent, "middle patchy peripheral right"),
    ("COVID-19 metadata.csv, SARS-10.1148rg.242035193-g04mr34g05x-Fig5-day9.jpg", "SARS in a 42-year-old woman who presented 9 days after exposure. Posteroanterior radiograph shows extensive consolidation in the left lower lobe.", Status::Absent, "extensive left lower"),
    ("COVID-19 metadata.csv, article_river_e4d185c06e3511eaa2321d8ab357a1de-c1mn.jpg", "Chest X-ray showing hazy bilateral lung opacities (arrows)", Status::Absent, "bilateral subtle"),
    ("COVID-19 metadata.csv, radiol.2020200274.fig3d.jpg", "diffusely increased opacities in both lungs, with relative bibasilar sparing", Status::Absent, "bilateral diffuse"),
    ("OpenI 816.xml", "Left lower lobe atelectasis or pneumonia with small pleural effusion", Status::Uncertain, "left lower"),
    ("OpenI 2165.xml", "Left base could be atelectasis or pneumonia", Status::Uncertain, "basal left"),
    ("OpenI 1641.xml", "Left lower lobe airspace disease suspicious for pneumonia", Status::Uncertain, "left lower"),
    ("OpenI 2177.xml", "Bibasilar airspace opacities seen on lateral XXXX XXXX be atelectasis or possibly pneumonia", Status::Uncertain, "basal bilateral"),
    ("OpenI 3567.xml", "Lungs demonstrate there is right lower lobe airspace disease and small effusion suspicious for pneumonia", Status::Uncertain, "lower right"),
    ("OpenI 3151.xml", "Lingular airspace disease which in the setting of XXXX is concerning for pneumonia", Status::Uncertain, "left lingular"),
    ("OpenI 2414.xml", "It would be difficult to completely exclude a superimposed pneumonia", Status::Uncertain, ""),
    ("OpenI 3974.xml", "May represent pneumonia", Status::Uncertain, ""),
    ("OpenI 1430.xml", "Minimal patchy bibasilar airspace opacities, XXXX atelectasis or evolving pneumonia", Status::Uncertain, "basal bilateral mild patchy"),
    ("OpenI 3567.xml", "Right lower lobe airspace disease and small effusion probably representing pneumonia", Status::Uncertain, "lower right"),
    ("OpenI 590.xml", "Right middle lobe airspace disease may reflect atelectasis or pneumonia", Status::Uncertain, "middle right"),
    ("OpenI 2961.xml", "Left basilar airspace opacity atelectasis versus pneumonitis", Status::Uncertain, "basal left"),
    ("OpenI 1076.xml", "Question of left lower lobe pneumonia and/or pleural effusion", Status::Uncertain, "left lower"),
    ("OpenI 1370.xml", "Possible infiltrates in the right lung and left base", Status::Uncertain, "basal left right"),
    ("OpenI 2761.xml", "Interval development of mild patchy airspace opacities within the posterior aspect of the right upper lobe, concerning for underlying pneumonia", Status::Uncertain, "mild patchy right upper"),
    ("OpenI 2279.xml", "Cardiomegaly with mild bibasilar infiltrates versus atelectasis", Status::Uncertain, "basal bilateral mild"),
    ("OpenI 2846.xml", "Cardiomegaly with bibasilar opacities, which may represent atelectasis or infiltrate", Status::Uncertain, "basal bilateral"),
    ("OpenI 1372.xml", "Mild bibasilar airspace disease, probably atelectasis", Status::Absent, "basal bilateral mild"),
    ("OpenI 945.xml", "Developing left upper lobe consolidation and focal atelectasis, consistent with pneumonitis", Status::Affirmed, "left upper"),
    ("COVID-19 metadata.csv, 000005-5-a.jpg", "Signs of left-sided hydrothorax, lung consolidation in RLL and suspected mass in the LUL", Status::Absent, "lower right"),
    ("COVID-19 metadata.csv, 000005-3.jpg", "Viral pneumonia was suspected and the patient was started on acyclovir treatment.", Status::Uncertain, ""),
    ("OpenI 3154.xml", "Low lung volumes with probable mild bibasilar airspace disease/atelectasis", Status::Uncertain, "basal bilateral mild"),
    ("OpenI 599.xml", "No effusions or pneumonia", Status::Negated, ""),
    ("OpenI 3240.xml", "Emphysema without superimposed pneumonia", Status::Negated, ""),
    ("OpenI 1321.xml", "Lungs are clear of pneumonia", Status::Negated, ""),
    ("OpenI 3545.xml", "There no focal airspace opacities to suggest pneumonia", Status::Negated, ""),
    ("OpenI 453.xml", "No confluent lobar pneumonia or pleural effusion", Status::Negated, ""),
    ("OpenI 1158.xml", "Continued slight cardiomegaly with no evidence for failure or pneumonia", Status::Negated, ""),
    ("OpenI 576.xml", "No definite findings of pneumonia", Status::Negated, ""),
    ("OpenI 1239.xml", "No edema or pneumonia", Status::Negated, ""),
    ("OpenI 3008.xml", "No effusions, pneumonia, or pneumothorax", Status::Negated, ""),
    ("OpenI 1785.xml", "No active pneumonia", Status::Negated, ""),
    ("OpenI 436.xml", "No active pulmonary edema or lobar pneumonia", Status::Negated, ""),
    ("OpenI 2478.xml", "No definite pneumonia", Status::Negated, ""),
    ("OpenI 3657.xml", "No effusion or infiltrate", Status::Negated, ""),
    ("OpenI 2274.xml", "Lungs are free of infiltrates", Status::Negated, ""),
    ("OpenI 1599.xml", "No focal consolidation, visible pneumothorax or large pleural effusion", Status::Negated, ""),
    ("OpenI 1081.xml", "No mass or focal opacities seen", Status::Negated, ""),
    ("OpenI 1320.xml", "No pleural effusion, pneumothorax or focal airspace disease", Status::Negated, ""),
    ("OpenI 3932.xml", "There is no definite focal infiltrate", Status::Negated, ""),
    ("OpenI 2169.xml", "No focal airspace consolidation to suggest pneumonia", Status::Negated, ""),
    ("OpenI 3899.xml", "No visualized consolidation", Status::Negated, ""),
    ("OpenI 3274.xml", "No overt airspace consolidation or pleural effusions", Status::Negated, ""),
    ("OpenI 1718.xml", "No lobar consolidation, large pleural effusion or pneumothorax", Status::Negated, ""),
    ("OpenI 1079.xml", "There is no acute consolidation or pneumothorax", Status::Negated, ""),
    ("OpenI 1189.xml", "The lungs are clear without focal area of consolidation, pleural effusion, or pneumothorax", Status::Negated, ""),
    ("OpenI 1943.xml", "Lungs symmetrically aerated without focal infiltrate or consolidation", Status::Negated, ""),
    ("OpenI 1006.xml", "There are no focal airspace opacities to suggest pneumonia", Status::Negated, ""),
    ("OpenI 426.xml", "The lungs are free of any focal airspace disease", Status::Negated, ""),
    ("OpenI 3107.xml", "No masses or infiltrates in the lungs", Status::Negated, ""),
    ("OpenI 3995.xml", "Interval resolution of bibasilar airspace disease", Status::Negated, ""),
    ("OpenI 3995.xml", "Compared with prior exam, there has been interval resolution of previously demonstrated bibasilar infiltrates", Status::Negated, ""),
    ("OpenI 1312.xml", "No pneumonia or effusion", Status::Negated, ""),
    ("OpenI 2907.xml", "There is XXXX patchy airspace disease in the right upper lobe along the XXXX fissure", Status::Absent, "patchy right upper"),
    ("OpenI 465.xml", "Right lower lung patchy opacities", Status::Absent, "lower patchy right"),
    ("OpenI 350.xml", "Left basilar patchy opacities", Status::Absent, "basal left patchy"),
    ("OpenI 2417.xml", "Minimal bibasilar airspace disease", Status::Absent, "basal bilateral mild"),
    ("OpenI 3280.xml", "Right middle lobe opacity is present", Status::Absent, "middle right"),
    ("OpenI 1691.xml", "There is stable streaky left lower lobe airspace disease", Status::Absent, "left lower"),
    ("OpenI 3466.xml", "Streaky perihilar opacities", Status::Absent, "perihilar"),
    ("OpenI 3813.xml", "XXXX opacity left lung base", Status::Absent, "basal left"),
    ("OpenI 2191.xml", "Left basilar retrocardiac opacity", Status::Absent, "basal left retrocardiac"),
    ("OpenI 3536.xml", "XXXX right medial basilar airspace disease", Status::Absent, "basal right"),
    ("OpenI 3686.xml", "Right basilar airspace disease is unchanged", Status::Absent, "basal right"),
    ("OpenI 144.xml", "Overall low lung volumes with mild patchy bibasilar airspace disease", Status::Absent, "basal bilateral mild patchy"),
    ("OpenI 1497.xml", "Ill-defined opacity in the lingula", Status::Absent, "left lingular subtle"),
    ("OpenI 2499.xml", "Low lung volumes bilaterally with bibasilar airspace opacities, right greater than left", Status::Absent, "basal bilateral"),
    ("OpenI 2177.xml", "Lungs demonstrate bibasilar airspace opacities better visualized on lateral view", Status::Absent, "basal bilateral"),
    ("OpenI 1752.xml", "There is a vague opacity in the right infrahilar region", Status::Absent, "perihilar right"),
    ("OpenI 3797.xml", "Left lower lobe air space opacities without significant change", Status::Absent, "left lower"),
    ("OpenI 2673.xml", "Also, bibasilar interstitial infiltrates are present", Status::Absent, "basal bilateral"),
    ("OpenI 3175.xml", "Stable nodular opacity within the left midlung", Status::Absent, "left middle"),
    ("COVID-19 metadata.csv, 000001-2.jpg", "Chest radiograph shows multifocal patchy opacities (asterisk) predominantly involving perihilar zone and a consolidation in RML (arrow)", Status::Absent, "middle multifocal patchy perihilar right"),
    ("OpenI 1039.xml", "Normal cardiac contour. Clear lung XXXX bilaterally. No pleural effusion or pneumothorax.", Status::Absent, ""),
    ("OpenI 1007.xml", "No acute cardiopulmonary abnormalities", Status::Absent, ""),
    ("OpenI 1090.xml", "Heart size is normal and the lungs are clear", Status::Absent, ""),
    ("OpenI 120.xml", "Degenerative changes of the thoracic spine", Status::Absent, ""),
    ("OpenI 1105.xml", "Mild cardiomegaly", Status::Absent, ""),
    ("OpenI 1003.xml", "No pneumothorax", Status::Absent, ""),
];

#[test]
fn extractor_reaches_f1_and_accuracy_of_0_9_on_real_sentences() {
    assert!(CASES.len() >= 80, "{} sentences", CASES.len());
    let ex = Extractor::new(Vocabulary::default_set());
    let (mut tp, mut fp, mut fneg, mut status_ok) = (0usize, 0usize, 0usize, 0usize);
    let mut failures = Vec::new();
    for (src, sentence, status, attrs) in CASES {
        let want: BTreeSet<String> = attrs.split_whitespace().map(String::from).collect();
        let got = ex.extract(sentence);
        tp += got.attributes.intersection(&want).count();
        fp += got.attributes.difference(&want).count();
        fneg += want.difference(&got.attributes).count();
        if got.status == *status {
            status_ok += 1;
        }
        if got.status != *status || got.attributes != want {
            failures.push(format!("  [{src}] {sentence:?}\n    status {:?} (want {status:?}), attributes {:?} (want {:?})", got.status, got.attributes, want));
        }
    }
    let precision = tp as f64 / (tp + fp).max(1) as f64;
    let recall = tp as f64 / (tp + fneg).max(1) as f64;
    let f1 = 2.0 * precision * recall / (precision + recall).max(1e-12);
    let accuracy = status_ok as f64 / CASES.len() as f64;
    println!("{} sentences: attributes precision {precision:.3} recall {recall:.3} F1 {f1:.3}; status accuracy {accuracy:.3}", CASES.len());
    println!("{} sentences differ:\n{}", failures.len(), failures.join("\n"));
    assert!(f1 >= 0.9, "attribute F1 {f1:.3} < 0.9");
    assert!(accuracy >= 0.9, "status accuracy {accuracy:.3} < 0.9");
}

#[test]
fn negation_uncertainty_and_lists() {
    let ex = Extractor::new(Vocabulary::default_set());
    let e = ex.extract("No pleural effusion, pneumothorax, or focal consolidation.");
    assert_eq!(e.status, Status::Negated);
    let e = ex.extract("RLL opacity, possibly atelectasis versus pneumonia. No left effusion.");
    assert_eq!(e.status, Status::Uncertain);
    assert_eq!(e.attributes.iter().cloned().collect::<Vec<_>>(), vec!["lower", "right"]);
    let e = ex.extract("Patchy opacities in the right, left and bibasilar regions, consistent with pneumonia.");
    assert_eq!(e.status, Status::Affirmed);
    for a in ["right", "left", "bilateral", "basal", "patchy"] {
        assert!(e.attributes.contains(a), "{a} missing from {:?}", e.attributes);
    }
    assert!(e.spans.iter().any(|s| s.attribute == "basal" && s.text.contains("bibasilar")));
    // no change is not a negation; an empty report has no mention
    assert_eq!(ex.extract("No change in the left lower lobe pneumonia.").status, Status::Affirmed);
    assert_eq!(ex.extract("").status, Status::Absent);
}
