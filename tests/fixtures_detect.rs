//! Box geometry against torchvision (`$ENGINE_FIXTURES/ops.safetensors` and
//! `retinanet_post.safetensors`): IoU, NMS keep lists (exact), the box coder,
//! anchors, and RetinaNet post-processing (same boxes and scores, same order).

mod common;
use common::{assert_close, fixtures_dir};
use engine::geometry::boxes::{as_boxes, box_iou, BoxCoder};
use engine::geometry::nms::nms;
use engine::localizer::postprocess::PostProcess;
use engine::weights::{read, TensorFile};

fn ids(f: &TensorFile, op: &str) -> Vec<String> {
    let mut v: Vec<String> = f.tensors.keys().filter_map(|k| k.strip_prefix(&format!("{op}/"))).filter_map(|r| r.split('/').next()).map(String::from).collect();
    v.dedup();
    assert!(!v.is_empty(), "{}: no case of {op}", f.path.display());
    v
}

fn ops() -> Option<TensorFile> {
    Some(read(&fixtures_dir()?.join("ops.safetensors")).unwrap())
}

#[test]
fn box_iou_matches() {
    let Some(f) = ops() else { return };
    for id in ids(&f, "box_iou") {
        let t = |n: &str| f.get(&format!("box_iou/{id}/{n}")).unwrap();
        assert_close("box_iou", &box_iou(&as_boxes(&t("a").data), &as_boxes(&t("b").data)), &t("iou").data, 1e-5);
    }
}

#[test]
fn nms_keeps_the_same_boxes_in_the_same_order() {
    let Some(f) = ops() else { return };
    for id in ids(&f, "nms") {
        let t = |n: &str| f.get(&format!("nms/{id}/{n}")).unwrap();
        let thr: f32 = f.meta(&format!("nms/{id}/iou_threshold")).unwrap();
        let keep: Vec<f32> = nms(&as_boxes(&t("boxes").data), &t("scores").data, thr).into_iter().map(|i| i as f32).collect();
        assert_eq!(keep, t("keep").data, "nms/{id}");
    }
}

#[test]
fn box_coder_matches() {
    let Some(f) = ops() else { return };
    for id in ids(&f, "box_coder") {
        let t = |n: &str| f.get(&format!("box_coder/{id}/{n}")).ok();
        let c = BoxCoder::default();
        let anchors = as_boxes(&t("anchors").unwrap().data);
        if let Some(b) = t("boxes") {
            let codes: Vec<f32> = as_boxes(&b.data).iter().zip(&anchors).flat_map(|(g, a)| c.encode(g, a)).collect();
            assert_close(&format!("box_coder/{id}/codes"), &codes, &t("codes").unwrap().data, 1e-5);
        }
        let dec: Vec<f32> = as_boxes(&t("codes").unwrap().data).iter().zip(&anchors).flat_map(|(d, a)| c.decode(d, a)).collect();
        assert_close(&format!("box_coder/{id}/decoded"), &dec, &t("decoded").unwrap().data, 1e-5);
    }
}

#[test]
fn retinanet_postprocess_gives_the_same_detections() {
    let Some(dir) = fixtures_dir() else { return };
    let f = read(&dir.join("retinanet_post.safetensors")).unwrap();
    let logits = f.get("post/cls_logits").unwrap();
    let (n, a, k) = (logits.shape[0], logits.shape[1], logits.shape[2]);
    let reg = f.get("post/bbox_regression").unwrap();
    let anchors = as_boxes(&f.get("post/anchors").unwrap().data);
    let size: Vec<usize> = f.meta("post/image_size").unwrap();
    let pp = PostProcess {
        score_thresh: f.meta("post/score_thresh").unwrap(),
        topk_candidates: f.meta("post/topk_candidates").unwrap(),
        nms_thresh: f.meta("post/nms_thresh").unwrap(),
        detections_per_image: f.meta("post/detections_per_img").unwrap(),
    };
    let levels: Vec<usize> = f.meta("post/level_sizes").unwrap();
    for i in 0..n {
        let det = pp.run(&logits.data[i * a * k..(i + 1) * a * k], &reg.data[i * a * 4..(i + 1) * a * 4], &anchors, &levels, k, [size[0], size[1]]);
        let want = |name: &str| f.get(&format!("post/det{i}/{name}")).unwrap().data.clone();
        let labels: Vec<f32> = det.labels.iter().map(|&l| l as f32).collect();
        let (ws, wl) = (want("scores"), want("labels"));
        for j in 0..labels.len().min(wl.len()) {
            if labels[j] != wl[j] {
                eprintln!("first difference at {j}: ours {} {:.9} / want {} {:.9}; next {:?} / {:?}", labels[j], det.scores[j], wl[j], ws[j], det.scores.get(j + 1), ws.get(j + 1));
                break;
            }
        }
        assert_eq!(labels, want("labels"), "image {i}: labels / order");
        assert_close(&format!("det{i} scores"), &det.scores, &want("scores"), 1e-6);
        assert_close(&format!("det{i} boxes"), &det.boxes.concat(), &want("boxes"), 1e-5);
    }
}
