"""The two graphs we export, as torch modules over SAM's own submodules.

``SamEncoderGraph``: uint8 image + (h, w) -> image embedding. It normalizes with SAM's pixel
mean/std and zeroes the padding exactly as ``Sam.preprocess``; the encoder is SAM's ViT or
MobileSAM's TinyViT, whichever the model holds.

``SamDecoderGraph``: embedding + P prompts of N points -> 4 masks and 4 IoU scores per prompt.
It is ``MaskDecoder.predict_masks`` with the prompt encoding of SAM's own ONNX export, changed
where TensorRT needs it: the per-prompt copy of the embedding is a broadcast (``expand``), not
``repeat_interleave`` (which exports as OneHot -> Tile and breaks TensorRT shape inference), and
there is no resize to the original image size (a data-dependent output shape; the client does it).
"""

from __future__ import annotations

import torch
from torch import nn

from sam_triton.client.contract import EMBED_DIM, EMBED_SIZE, IMAGE_SIZE, LOW_RES_SIZE

from ..models import mobile_sam


class SamEncoderGraph(nn.Module):
    """image BxHxWx3 uint8 (H = W = 1024), input_size Bx2 int32 -> image_embeddings Bx256x64x64 fp32."""

    # buffers registered in __init__ (nn.Module's __getattr__ would type them Tensor | Module)
    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor
    pixel_index: torch.Tensor

    def __init__(self, sam) -> None:
        super().__init__()
        # MobileSAM's TinyViT needs a hook to keep the batch dynamic (a copy; the reference model is untouched).
        self.image_encoder = mobile_sam.traceable_encoder(sam.image_encoder) if mobile_sam.is_mobile_sam(sam) else sam.image_encoder
        self.register_buffer("pixel_mean", sam.pixel_mean.detach().clone().view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", sam.pixel_std.detach().clone().view(1, 3, 1, 1), persistent=False)
        # A float index grid: comparing floats keeps int64 arithmetic out of the graph.
        self.register_buffer("pixel_index", torch.arange(IMAGE_SIZE, dtype=torch.float32, device=sam.pixel_mean.device), persistent=False)

    def preprocess(self, image: torch.Tensor, input_size: torch.Tensor) -> torch.Tensor:
        """Bx1024x1024x3 uint8 -> Bx3x1024x1024 normalized, zero outside (h, w): Sam.preprocess."""
        # Cast before anything else: TensorRT takes UINT8 only as a network input feeding a cast.
        x = image.to(torch.float32).permute(0, 3, 1, 2)
        x = (x - self.pixel_mean) / self.pixel_std
        size = input_size.to(torch.float32)
        inside_rows = self.pixel_index.view(1, 1, IMAGE_SIZE, 1) < size[:, 0].view(-1, 1, 1, 1)
        inside_cols = self.pixel_index.view(1, 1, 1, IMAGE_SIZE) < size[:, 1].view(-1, 1, 1, 1)
        return torch.where(inside_rows & inside_cols, x, torch.zeros_like(x))

    def forward(self, image: torch.Tensor, input_size: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(self.preprocess(image, input_size))


class SamDecoderGraph(nn.Module):
    """Prompt encoder + mask decoder for B embeddings with P prompts of N points each.

    in:  image_embeddings Bx256x64x64, point_coords BxPxNx2 (resized 1024 frame),
         point_labels BxPxN, mask_input BxPx1x256x256, has_mask_input BxP
    out: iou_predictions BxPx4, low_res_masks BxPx4x256x256 (index 0 single-mask, 1..3 multimask)
    """

    image_pe: torch.Tensor  # a buffer registered in __init__

    def __init__(self, sam) -> None:
        super().__init__()
        self.prompt_encoder = sam.prompt_encoder
        self.mask_decoder = sam.mask_decoder
        # The dense positional encoding depends on no input: fold it into a constant.
        with torch.no_grad():
            self.register_buffer("image_pe", sam.prompt_encoder.get_dense_pe().detach().clone(), persistent=False)

    def _embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """SAM's PromptEncoder._embed_points / _embed_boxes as arithmetic on labels (no indexing)."""
        pe = self.prompt_encoder
        coords = (coords + 0.5) / IMAGE_SIZE
        embedding = pe.pe_layer._pe_encoding(coords)
        labels = labels.unsqueeze(-1)
        embedding = embedding * (labels != -1).to(embedding.dtype)
        embedding = embedding + pe.not_a_point_embed.weight * (labels == -1).to(embedding.dtype)
        for i in range(pe.num_point_embeddings):
            embedding = embedding + pe.point_embeddings[i].weight * (labels == i).to(embedding.dtype)
        return embedding

    def _embed_masks(self, mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> torch.Tensor:
        pe = self.prompt_encoder
        has = has_mask_input.view(-1, 1, 1, 1)
        return has * pe.mask_downscaling(mask_input) + (1 - has) * pe.no_mask_embed.weight.view(1, -1, 1, 1)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ):
        decoder = self.mask_decoder
        batch, prompts = point_labels.shape[0], point_labels.shape[1]
        sparse = self._embed_points(point_coords.flatten(0, 1), point_labels.flatten(0, 1))
        dense = self._embed_masks(mask_input.flatten(0, 1), has_mask_input.flatten(0, 1))

        output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
        output_tokens = output_tokens.unsqueeze(0).expand(sparse.shape[0], -1, -1)
        tokens = torch.cat((output_tokens, sparse), dim=1)

        # Broadcast each embedding to its P prompts (repeat_interleave would export as OneHot/Tile).
        src = image_embeddings.unsqueeze(1).expand(-1, prompts, -1, -1, -1).flatten(0, 1)
        src = src + dense
        pos_src = self.image_pe.expand(src.shape[0], -1, -1, -1)

        hs, src = decoder.transformer(src, pos_src, tokens)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : (1 + decoder.num_mask_tokens), :]

        src = src.transpose(1, 2).reshape(-1, EMBED_DIM, EMBED_SIZE, EMBED_SIZE)
        upscaled = decoder.output_upscaling(src)
        hyper_in = torch.stack(
            [decoder.output_hypernetworks_mlps[i](mask_tokens_out[:, i, :]) for i in range(decoder.num_mask_tokens)],
            dim=1,
        )
        masks = hyper_in @ upscaled.flatten(2)
        masks = masks.reshape(batch, prompts, decoder.num_mask_tokens, LOW_RES_SIZE, LOW_RES_SIZE)
        iou = decoder.iou_prediction_head(iou_token_out).reshape(batch, prompts, decoder.num_mask_tokens)
        return iou, masks
