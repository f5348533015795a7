"""A client process the disconnect test kills: it sends heavy requests without waiting for them,
prints "sent" and sleeps until killed. Usage: python client_to_kill.py HOST:PORT"""

import sys
import time

import numpy as np
import tritonclient.grpc as grpcclient

from sam_triton.client.transport.triton_io import infer_rpc

OUTPUTS = ("iou_predictions", "low_res_masks")


def main(url: str) -> None:
    prompts = {
        "point_coords": np.full((1, 16, 2, 2), 100.0, np.float32),
        "point_labels": np.ones((1, 16, 2), np.float32),
        "mask_input": np.zeros((1, 16, 1, 256, 256), np.float32),
        "has_mask_input": np.zeros((1, 16), np.float32),
    }
    decoder = infer_rpc("sam_decoder", {"image_embeddings": np.ones((1, 256, 64, 64), np.float32), **prompts}, OUTPUTS, timeout_s=600)
    ensemble = infer_rpc(
        "sam",
        {
            "image": np.full((1, 1024, 1024, 3), 90, np.uint8),
            "input_size": np.array([[1024, 768]], np.int32),
            **{k: v[:, :1] for k, v in prompts.items()},
        },
        OUTPUTS,
        timeout_s=600,
    )
    client = grpcclient.InferenceServerClient(url)
    for _ in range(3):
        for rpc in (decoder, ensemble):
            client.async_infer(callback=lambda result, error: None, **rpc.kwargs)
    print("sent", flush=True)
    time.sleep(600)


if __name__ == "__main__":
    main(sys.argv[1])
