//! MIMIC-CXR-JPG and MS-CXR on a made-up tree in their published layout:
//! gzipped and plain tables, frontal views, splits, CheXpert / NegBio labels
//! with 1 / 0 / -1 / blank, reports gzipped or not, MS-CXR boxes scaled to
//! a resized copy, and errors that name the file and line.

use engine::data::mimic::{Labeller, Mention, Mimic};
use engine::data::truth::read_truth;
use std::io::Write;
use std::path::Path;

fn gz(path: &Path, text: &str) {
    let mut e = flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::default());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap();
}

fn tree(root: &Path) {
    let img = engine::data::image::Gray { width: 8, height: 8, data: vec![0.5; 64] }.to_png().unwrap();
    for (sub, st, d) in [("10000032", "50414267", "aaa"), ("10000032", "50414267", "bbb"), ("11000011", "51000001", "ccc")] {
        let dir = root.join(format!("files/p{}/p{sub}/s{st}", &sub[..2]));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{d}.jpg")), &img).unwrap();
    }
    gz(&root.join("mimic-cxr-2.0.0-metadata.csv.gz"),
       "dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns\naaa,10000032,50414267,CHEST (PA AND LAT),PA,8,8\nbbb,10000032,50414267,CHEST (PA AND LAT),LATERAL,8,8\nccc,11000011,51000001,CHEST (PORTABLE AP),AP,8,8\nddd,11000011,51000001,CHEST (PORTABLE AP),AP,8,8\n");
    std::fs::write(root.join("mimic-cxr-2.0.0-split.csv"), "dicom_id,study_id,subject_id,split\naaa,50414267,10000032,train\nbbb,50414267,10000032,train\nccc,51000001,11000011,test\n").unwrap();
    gz(&root.join("mimic-cxr-2.0.0-chexpert.csv.gz"), "subject_id,study_id,Atelectasis,Pneumonia,No Finding\n10000032,50414267,,1.0,\n11000011,51000001,1.0,-1.0,\n");
    std::fs::write(root.join("mimic-cxr-2.0.0-negbio.csv"), "subject_id,study_id,Pneumonia\n10000032,50414267,0.0\n11000011,51000001,\n").unwrap();
    std::fs::write(root.join("files/p10/p10000032/s50414267.txt"), "FINDINGS: patchy opacity in the right lower lobe.\n").unwrap();
    gz(&root.join("files/p11/p11000011/s51000001.txt.gz"), "IMPRESSION: no pneumonia.\n");
}

#[test]
fn a_mimic_root_gives_frontal_images_labels_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path());
    let m = Mimic::new(dir.path()).unwrap();
    let all = m.images().unwrap();
    assert_eq!(all.len(), 4);
    let frontal = m.frontal_images().unwrap();
    // the lateral view and the image without a file are left out
    assert_eq!(frontal.iter().map(|i| (i.dicom_id.as_str(), i.view.as_str(), i.split.as_str())).collect::<Vec<_>>(), vec![("aaa", "PA", "train"), ("ccc", "AP", "test")]);
    assert!(frontal[0].path.ends_with("files/p10/p10000032/s50414267/aaa.jpg"));
    let chexpert = m.labels(Labeller::Chexpert, "Pneumonia").unwrap();
    assert_eq!((chexpert["50414267"], chexpert["51000001"]), (Mention::Positive, Mention::Uncertain));
    assert_eq!(m.labels(Labeller::Chexpert, "Atelectasis").unwrap()["50414267"], Mention::Absent);
    let negbio = m.labels(Labeller::Negbio, "Pneumonia").unwrap();
    assert_eq!((negbio["50414267"], negbio["51000001"]), (Mention::Negative, Mention::Absent));
    assert!(m.report("10000032", "50414267").unwrap().contains("right lower lobe"));
    assert!(m.report("11000011", "51000001").unwrap().contains("no pneumonia"), "the gzipped report");
    let err = m.labels(Labeller::Chexpert, "Edema").unwrap_err().to_string();
    assert!(err.contains("chexpert") && err.contains("Edema"), "{err}");
    std::fs::write(dir.path().join("mimic-cxr-2.0.0-negbio.csv"), "subject_id,study_id,Pneumonia\n10000032,50414267,yes\n").unwrap();
    let err = m.labels(Labeller::Negbio, "Pneumonia").unwrap_err().to_string();
    assert!(err.contains("line 2") && err.contains("\"yes\""), "{err}");
    assert!(Mimic::new(&dir.path().join("files/p10")).is_err());
}

#[test]
fn ms_cxr_boxes_are_keyed_by_dicom_id_and_scale_with_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("MS_CXR_Local_Alignment_v1.0.0.csv");
    std::fs::write(&p, "dicom_id,category_name,label_text,path,x,y,w,h,image_width,image_height,split\n\
        aaa,Pneumonia,patchy opacity in the right lower lobe,files/p10/p10000032/s50414267/aaa.dcm,100,200,300,400,2000,2500,test\n\
        aaa,Pneumonia,left base,files/p10/p10000032/s50414267/aaa.dcm,1200,1500,200,100,2000,2500,test\n").unwrap();
    let t = read_truth(&p).unwrap();
    assert_eq!(t.boxes("aaa"), vec![[100.0, 200.0, 400.0, 600.0], [1200.0, 1500.0, 1400.0, 1600.0]]);
    // a 512 x 640 JPEG of the same image
    assert_eq!(t.boxes_in("aaa", 512, 640)[0], [25.6, 51.2, 102.4, 153.6]);
    assert_eq!(t.images["aaa"][0].label, "Pneumonia");
    std::fs::write(&p, "dicom_id,category_name,label_text,path,x,y,w,h,image_width,image_height\naaa,Pneumonia,x,p,1900,200,300,400,2000,2500\n").unwrap();
    let err = read_truth(&p).unwrap_err().to_string();
    assert!(err.contains("line 2") && err.contains("outside"), "{err}");
}
