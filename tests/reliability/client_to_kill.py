"""A client process the disconnect test kills: it sends heavy requests without waiting for them,
prints "sent" and sleeps until killed. Usage: python client_to_kill.py HOST:PORT"""

import sys
import time

import numpy as np
import tritonclient.grpc as grpcclient


def _inputs(arrays):
    items = []
    for name, array in arrays.items():
        item = grpcclient.InferInput(name, list(array.shape), {"uint8": "UINT8", "int32": "INT32", "float32": "FP32"}[str(array.dtype)])
        item.set_data_from_numpy(array)
        items.append(item)
    return items


def main(url: str) -> None:
    prompts = {"point_coords": np.full((1, 16, 2, 2), 100.0, np.float32), "point_labels": np.ones((1, 16, 2), np.float32),
               "mask_input": np.zeros((1, 16, 1, 256, 256), np.float32), "has_mask_input": np.zeros((1, 64), np.float32)}
    decoder = _inputs({"image_embeddings": np.ones((1, 256, 64, 64), np.float32), **prompts})
    ensemble = _inputs({"image": np.full((1, 1024, 1024, 3), 90, np.uint8), "input_size": np.array([[1024, 768]], np.int32),
                        **{k: v[:, :1] for k, v in prompts.items()}})
    client = grpcclient.InferenceServerClient(url)
    for _ in range(3):
        client.async_infer("sam_decoder", decoder, callback=lambda result, error: None, client_timeout=600)
        client.async_infer("sam", ensemble, callback=lambda result, error: None, client_timeout=600)
    print("sent", flush=True)
    time.sleep(600)


if __name__ == "__main__":
    main(sys.argv[1])
