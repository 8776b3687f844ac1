"""LISA's ReasonSeg metric, transcribed: utils/utils.py intersectionAndUnionGPU and the meters of train_ds.py
validate(), on torch tensors as LISA runs them.  The tests hold src/host/eval.ts to it.

`python -m lisa_export.reason_seg_metric < pairs.json` reads {"pairs": [{"h", "w", "pred": [0/1...], "target":
[0/1/255...]}...]} (each image's prediction and get_mask_from_json target, row-major) and prints {"giou", "ciou",
"per_image": [acc_iou...], "intersection": [...], "union": [...]}.
"""

from __future__ import annotations

import json
import sys

import torch


def intersectionAndUnionGPU(output, target, K, ignore_index=255):  # noqa: N802 - LISA's name
    # 'K' classes, output and target sizes are N or N * L or N * H * W, each value in range 0 to K - 1.
    assert output.dim() in [1, 2, 3]
    assert output.shape == target.shape
    output = output.view(-1)
    target = target.view(-1)
    output[target == ignore_index] = ignore_index
    intersection = output[output == target]
    area_intersection = torch.histc(intersection, bins=K, min=0, max=K - 1)
    area_output = torch.histc(output, bins=K, min=0, max=K - 1)
    area_target = torch.histc(target, bins=K, min=0, max=K - 1)
    area_union = area_output + area_target - area_intersection
    return area_intersection, area_union, area_target


def validate(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> dict:
    """validate()'s loop with one target mask per image (ReasonSeg): AverageMeter sums, then gIoU = acc_iou avg of
    class 1, cIoU = intersection sum / union sum of class 1."""
    inter_sum = torch.zeros(2, dtype=torch.float64)
    union_sum = torch.zeros(2, dtype=torch.float64)
    acc_sum = torch.zeros(2, dtype=torch.float64)
    count = 0
    per_image, inters, unions = [], [], []
    for output_i, mask_i in pairs:
        # histc on float tensors, as LISA's .float() masks on the GPU (.int() there; histc wants floating point on CPU)
        intersection_i, union_i, _ = intersectionAndUnionGPU(
            output_i.contiguous().clone().float(), mask_i.contiguous().float(), 2, ignore_index=255
        )
        intersection, union, acc_iou = 0.0, 0.0, 0.0
        intersection += intersection_i
        union += union_i
        acc_iou += intersection_i / (union_i + 1e-5)
        acc_iou[union_i == 0] += 1.0  # no-object target
        acc_iou = acc_iou / 1  # masks_list.shape[0] == 1
        inter_sum += intersection.double()
        union_sum += union.double()
        acc_sum += acc_iou.double()
        count += 1
        per_image.append(float(acc_iou[1]))
        inters.append(float(intersection[1]))
        unions.append(float(union[1]))
    iou_class = inter_sum / (union_sum + 1e-10)
    return {
        "giou": float(acc_sum[1] / max(count, 1)),
        "ciou": float(iou_class[1]),
        "per_image": per_image,
        "intersection": inters,
        "union": unions,
    }


def main() -> int:
    req = json.load(sys.stdin)
    pairs = []
    for p in req["pairs"]:
        h, w = p["h"], p["w"]
        pairs.append(
            (
                torch.tensor(p["pred"], dtype=torch.int32).reshape(h, w),
                torch.tensor(p["target"], dtype=torch.int32).reshape(h, w),
            )
        )
    json.dump(validate(pairs), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
