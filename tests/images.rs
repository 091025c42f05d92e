//! Reading images and labels: the sample DICOM (JPEG baseline), PNGs and
//! JPEGs of ../shared/data/samples, 16-bit and RGBA PNGs, MONOCHROME1, and a
//! clear message for a corrupt PNG, a DICOM without pixel data, a CSV with a
//! missing column and a box outside its image.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use engine::data::image::{decode, load};
use engine::data::rsna::{check_boxes_inside, read_labels};
use std::path::{Path, PathBuf};

fn samples_dir() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/samples");
    if d.is_dir() { Some(d) } else { eprintln!("SKIPPED: {} not found", d.display()); None }
}

#[test]
fn sample_files_decode() {
    let Some(d) = samples_dir() else { return };
    let mut n = 0;
    for e in std::fs::read_dir(&d).unwrap().flatten() {
        let g = load(&e.path()).unwrap_or_else(|err| panic!("{err:#}"));
        assert!(g.width >= 256 && g.height >= 256, "{}: {}x{}", e.path().display(), g.width, g.height);
        let (lo, hi) = g.data.iter().fold((1.0f32, 0.0f32), |(a, b), &v| (a.min(v), b.max(v)));
        assert!(lo >= 0.0 && hi <= 1.0 && hi - lo > 0.3, "{}: range {lo}..{hi}", e.path().display());
        n += 1;
    }
    assert!(n >= 5);
    // the DICOM is JPEG-baseline compressed, 1024x1024, MONOCHROME2
    let dcm = std::fs::read_dir(&d).unwrap().flatten().find(|e| e.path().extension().is_some_and(|x| x == "dcm")).unwrap();
    let g = load(&dcm.path()).unwrap();
    assert_eq!((g.width, g.height), (1024, 1024));
}

fn write_dicom(path: &Path, photometric: &str, pixels: Option<&[u16]>) {
    let mut obj = InMemDicomObject::new_empty();
    obj.put(DataElement::new(tags::SOP_CLASS_UID, VR::UI, PrimitiveValue::from("1.2.840.10008.5.1.4.1.1.1")));
    obj.put(DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from("1.2.3.4")));
    obj.put(DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(2u16)));
    obj.put(DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(3u16)));
    obj.put(DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16)));
    obj.put(DataElement::new(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, PrimitiveValue::from(photometric)));
    obj.put(DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16u16)));
    obj.put(DataElement::new(tags::BITS_STORED, VR::US, PrimitiveValue::from(12u16)));
    obj.put(DataElement::new(tags::HIGH_BIT, VR::US, PrimitiveValue::from(11u16)));
    obj.put(DataElement::new(tags::PIXEL_REPRESENTATION, VR::US, PrimitiveValue::from(0u16)));
    if let Some(p) = pixels {
        obj.put(DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(p.iter().copied().collect())));
    }
    let file = obj
        .with_meta(FileMetaTableBuilder::new().transfer_syntax("1.2.840.10008.1.2.1").media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.1").media_storage_sop_instance_uid("1.2.3.4"))
        .unwrap();
    file.write_to_file(path).unwrap();
}

#[test]
fn dicom_monochrome1_is_inverted_and_missing_pixels_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let px = [0u16, 1000, 2000, 3000, 4000, 4095];
    let (m1, m2) = (dir.path().join("m1.dcm"), dir.path().join("m2.dcm"));
    write_dicom(&m1, "MONOCHROME1", Some(&px));
    write_dicom(&m2, "MONOCHROME2", Some(&px));
    let (a, b) = (load(&m1).unwrap(), load(&m2).unwrap());
    assert_eq!((b.width, b.height), (3, 2));
    assert_eq!(b.data[0], 0.0);
    assert_eq!(b.data[5], 1.0);
    for (x, y) in a.data.iter().zip(&b.data) {
        assert!((x + y - 1.0).abs() < 1e-6, "MONOCHROME1 not inverted: {x} {y}");
    }
    let none = dir.path().join("nopixels.dcm");
    write_dicom(&none, "MONOCHROME2", None);
    let e = format!("{:#}", load(&none).unwrap_err());
    assert!(e.contains("nopixels.dcm") && e.contains("no pixel data"), "{e}");
}

#[test]
fn sixteen_bit_and_rgba_png() {
    let g16 = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(2, 1, vec![0u16, 65535]).unwrap();
    let mut bytes = std::io::Cursor::new(Vec::new());
    g16.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    assert_eq!(decode(bytes.get_ref()).unwrap().data, vec![0.0, 1.0]);
    let rgba = image::RgbaImage::from_raw(1, 1, vec![255, 255, 255, 0]).unwrap();
    let mut bytes = std::io::Cursor::new(Vec::new());
    rgba.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    assert!((decode(bytes.get_ref()).unwrap().data[0] - 1.0).abs() < 1e-6);
}

#[test]
fn corrupt_png_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("broken.png");
    let mut bytes = engine::data::image::Gray { width: 8, height: 8, data: vec![0.5; 64] }.to_png().unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&p, bytes).unwrap();
    let e = format!("{:#}", load(&p).unwrap_err());
    assert!(e.contains("broken.png") && e.contains("cannot decode image"), "{e}");
}

#[test]
fn csv_with_a_missing_column_and_boxes_outside_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("labels.csv");
    std::fs::write(&p, "patientId,x,y,width,Target\na,1,2,3,1\n").unwrap();
    let e = format!("{:#}", read_labels(&p).unwrap_err());
    assert!(e.contains("missing column height") && e.contains("labels.csv"), "{e}");
    std::fs::write(&p, "patientId,x,y,width,height,Target\na,1,2,3,4,1\na,5,5,x,4,1\n").unwrap();
    let e = format!("{:#}", read_labels(&p).unwrap_err());
    assert!(e.contains("line 3") && e.contains("width"), "{e}");
    std::fs::write(&p, "patientId,x,y,width,height,Target\na,10,20,30,40,1\nb,,,,,0\n").unwrap();
    let l = read_labels(&p).unwrap();
    assert_eq!(l.images["a"], vec![[10.0, 20.0, 40.0, 60.0]]);
    assert!(l.images["b"].is_empty());
    let e = format!("{:#}", check_boxes_inside("a", &l.images["a"], 32, 32).unwrap_err());
    assert!(e.contains("image a") && e.contains("outside the 32x32 image"), "{e}");
    assert!(check_boxes_inside("a", &l.images["a"], 64, 64).is_ok());
}
