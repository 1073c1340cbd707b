"""The built-in tasks: txt2img, img2img, inpaint, outpaint, instruct_edit, remove_background,
upscale and finetune, as schemas with sensible defaults and bounds.

Models in the catalog name these tasks; a GPU host advertises each with its model's defaults.
Inputs that mean the same thing have the same name, bounds and help in every task.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from lightbox_node.tasks.schema import (
    AnyPositive,
    BooleanInput,
    Choice,
    ChoiceInput,
    Group,
    ImageInput,
    ImageListInput,
    Input,
    IntegerInput,
    MaskInput,
    NumberInput,
    Output,
    PixelStepsCost,
    ProductCost,
    RequiredIf,
    SeedInput,
    SumAtMost,
    TaskSchema,
    TextInput,
    schemas_by_name,
)

MIN_SIDE = 64
MAX_SIDE = 2048
SIDE_STEP = 8
"""Stable Diffusion's VAE halves the image three times, so sides are multiples of 8."""

LORA_MEDIA_TYPE = "application/vnd.lightbox.lora+safetensors"

# -- groups ---------------------------------------------------------------------------------

PROMPT = Group(name="prompt", label="Prompt")
IMAGE = Group(name="image", label="Image")
SIZE = Group(name="size", label="Size")
SAMPLING = Group(name="sampling", label="Sampling")
TRAINING = Group(name="training", label="Training")

# -- shared inputs --------------------------------------------------------------------------


def _prompt(order: int = 10) -> Input:
    return TextInput(
        name="prompt",
        label="Prompt",
        help="Describe the picture you want: subject, style, lighting, composition.",
        required=True,
        min_length=1,
        max_length=2000,
        multiline=True,
        placeholder="a watercolor lighthouse at dawn, soft light",
        group="prompt",
        order=order,
    )


def _negative_prompt(order: int = 20) -> Input:
    return TextInput(
        name="negative_prompt",
        label="Negative prompt",
        help="What the picture should not contain, e.g. 'blurry, extra fingers, text'.",
        default="",
        max_length=2000,
        multiline=True,
        group="prompt",
        order=order,
    )


def _concept(order: int = 30) -> Input:
    return TextInput(
        name="concept",
        label="Concept",
        help="Paint with a fine-tuned concept: its name in the model registry. Write the "
        "concept's token in the prompt, e.g. 'a photo of sks dog on a beach'.",
        min_length=1,
        max_length=128,
        format="concept",
        placeholder="my-dog",
        group="prompt",
        order=order,
    )


def _source_image(label: str = "Image", help: str = "The picture to start from.") -> Input:
    return ImageInput(
        name="image",
        label=label,
        help=help + f" Sides from {MIN_SIDE} to {MAX_SIDE} px, multiples of {SIDE_STEP}.",
        required=True,
        min_width=MIN_SIDE,
        max_width=MAX_SIDE,
        min_height=MIN_SIDE,
        max_height=MAX_SIDE,
        multiple_of=SIDE_STEP,
        group="image",
        order=10,
    )


def _side(name: str, label: str, order: int) -> Input:
    return IntegerInput(
        name=name,
        label=label,
        help=f"Output {name} in pixels, a multiple of {SIDE_STEP}. The model is trained at 512.",
        default=512,
        min=MIN_SIDE,
        max=MAX_SIDE,
        step=SIDE_STEP,
        unit="px",
        group="size",
        order=order,
    )


def _batch_size(order: int = 30) -> Input:
    return IntegerInput(
        name="batch_size",
        label="Images",
        help="How many images to make at once, each from the next seed.",
        default=1,
        min=1,
        max=8,
        unit="images",
        group="size",
        order=order,
    )


def _steps(default: int = 25) -> Input:
    return IntegerInput(
        name="steps",
        label="Steps",
        help="Denoising steps: more is slower and usually finer, with little gain past 50.",
        default=default,
        min=1,
        max=150,
        unit="steps",
        group="sampling",
        order=10,
    )


def _guidance_scale(default: float = 7.5) -> Input:
    return NumberInput(
        name="guidance_scale",
        label="Prompt guidance",
        help="How closely to follow the prompt (classifier-free guidance). 5–9 suits most "
        "pictures; 0 ignores the prompt.",
        default=default,
        min=0.0,
        max=30.0,
        step=0.1,
        group="sampling",
        order=20,
    )


def _strength(default: float, help: str) -> Input:
    return NumberInput(
        name="strength",
        label="Strength",
        help=help,
        default=default,
        min=0.0,
        max=1.0,
        step=0.01,
        group="sampling",
        order=30,
    )


SAMPLERS = (
    Choice(value="euler_a", label="Euler ancestral", help="Fast and varied; the usual choice."),
    Choice(value="euler", label="Euler", help="Deterministic and smooth."),
    Choice(value="dpmpp_2m", label="DPM++ 2M", help="Sharp results in 20–30 steps."),
    Choice(value="ddim", label="DDIM", help="Deterministic; good for reproducible edits."),
    Choice(value="pndm", label="PNDM", help="Stable Diffusion's original sampler."),
)


def _sampler() -> Input:
    return ChoiceInput(
        name="sampler",
        label="Sampler",
        help="The numerical method that removes noise step by step.",
        default="euler_a",
        options=SAMPLERS,
        advanced=True,
        group="sampling",
        order=40,
    )


def _seed(order: int = 50, group: str = "sampling") -> Input:
    return SeedInput(
        name="seed",
        label="Seed",
        help="The same seed with the same settings gives the same picture; 'random' picks one.",
        group=group,
        order=order,
        advanced=True,
    )


def _images_output(description: str) -> Output:
    return Output(name="images", type="image_list", description=description, media_type="image/png")


def _image_output(description: str) -> Output:
    return Output(name="image", type="image", description=description, media_type="image/png")


# -- the tasks ------------------------------------------------------------------------------

TXT2IMG = TaskSchema(
    name="txt2img",
    title="Text to image",
    description="Paint a new picture from a text prompt.",
    groups=(PROMPT, SIZE, SAMPLING),
    inputs=(
        _prompt(),
        _negative_prompt(),
        _concept(),
        _side("width", "Width", 10),
        _side("height", "Height", 20),
        _batch_size(),
        _steps(),
        _guidance_scale(),
        _sampler(),
        _seed(),
    ),
    outputs=(_images_output("The generated pictures, one per image asked for."),),
    cost=PixelStepsCost(width="width", height="height", steps="steps", batch="batch_size"),
)

IMG2IMG = TaskSchema(
    name="img2img",
    title="Image to image",
    description="Repaint a picture following a prompt, keeping as much of it as you choose.",
    groups=(IMAGE, PROMPT, SIZE, SAMPLING),
    inputs=(
        _source_image(),
        _prompt(),
        _negative_prompt(),
        _concept(),
        _strength(
            0.75,
            "How much to change: 0 keeps the picture, 1 repaints it entirely. The model runs "
            "only this share of the steps.",
        ),
        _batch_size(),
        _steps(),
        _guidance_scale(),
        _sampler(),
        _seed(),
    ),
    outputs=(_images_output("The repainted pictures, the size of the source image."),),
    cost=PixelStepsCost(
        width="image.width",
        height="image.height",
        steps="steps",
        batch="batch_size",
        strength="strength",
    ),
)

INPAINT = TaskSchema(
    name="inpaint",
    title="Inpaint",
    description="Repaint the masked part of a picture following a prompt; the rest is kept.",
    groups=(IMAGE, PROMPT, SIZE, SAMPLING),
    inputs=(
        _source_image(),
        MaskInput(
            name="mask",
            label="Mask",
            help="White where the picture is repainted, black where it is kept; the same size "
            "as the image.",
            required=True,
            image="image",
            group="image",
            order=20,
        ),
        IntegerInput(
            name="mask_blur",
            label="Mask feather",
            help="Soften the mask edge by this many pixels so the repaint blends in.",
            default=4,
            min=0,
            max=64,
            unit="px",
            group="image",
            order=30,
            advanced=True,
        ),
        _prompt(),
        _negative_prompt(),
        _strength(1.0, "How much to change inside the mask: 1 repaints it from scratch."),
        _batch_size(),
        _steps(),
        _guidance_scale(),
        _sampler(),
        _seed(),
    ),
    outputs=(_images_output("The pictures with the masked part repainted."),),
    cost=PixelStepsCost(
        width="image.width",
        height="image.height",
        steps="steps",
        batch="batch_size",
        strength="strength",
    ),
)


def _extension(name: str, label: str, order: int) -> Input:
    return IntegerInput(
        name=name,
        label=label,
        help=f"Pixels to add on the {name}, a multiple of {SIDE_STEP}.",
        default=128,
        min=0,
        max=1024,
        step=SIDE_STEP,
        unit="px",
        group="size",
        order=order,
    )


OUTPAINT = TaskSchema(
    name="outpaint",
    title="Outpaint",
    description="Extend a picture beyond its borders, painting what is likely to be there.",
    groups=(IMAGE, SIZE, PROMPT, SAMPLING),
    inputs=(
        _source_image(),
        _extension("left", "Extend left", 10),
        _extension("right", "Extend right", 20),
        _extension("top", "Extend top", 30),
        _extension("bottom", "Extend bottom", 40),
        IntegerInput(
            name="feather",
            label="Seam feather",
            help="Blend the new area into the old over this many pixels.",
            default=32,
            min=0,
            max=256,
            unit="px",
            group="size",
            order=50,
            advanced=True,
        ),
        _prompt(),
        _negative_prompt(),
        _steps(),
        _guidance_scale(),
        _sampler(),
        _seed(),
    ),
    constraints=(
        AnyPositive(
            inputs=("left", "right", "top", "bottom"),
            message="extend the picture on at least one side",
        ),
        SumAtMost(
            terms=("image.width", "left", "right"),
            max=MAX_SIDE,
            message=f"the extended picture must be at most {MAX_SIDE} px wide",
        ),
        SumAtMost(
            terms=("image.height", "top", "bottom"),
            max=MAX_SIDE,
            message=f"the extended picture must be at most {MAX_SIDE} px high",
        ),
    ),
    outputs=(_image_output("The extended picture."),),
    cost=PixelStepsCost(
        width=("image.width", "left", "right"),
        height=("image.height", "top", "bottom"),
        steps="steps",
    ),
)

INSTRUCT_EDIT = TaskSchema(
    name="instruct_edit",
    title="Edit by instruction",
    description="Change a picture by saying what to do, e.g. 'make it winter' (InstructPix2Pix).",
    groups=(IMAGE, PROMPT, SIZE, SAMPLING),
    inputs=(
        _source_image(),
        TextInput(
            name="instruction",
            label="Instruction",
            help="What to change, as an instruction: 'turn the sky purple', 'make it a sketch'.",
            required=True,
            min_length=1,
            max_length=1000,
            multiline=True,
            placeholder="make it look like a winter morning",
            group="prompt",
            order=10,
        ),
        _negative_prompt(),
        _batch_size(),
        _steps(20),
        _guidance_scale(7.5),
        NumberInput(
            name="image_guidance_scale",
            label="Image guidance",
            help="How closely to keep the original picture: higher keeps more of it; 1–2 suits "
            "most edits.",
            default=1.5,
            min=0.0,
            max=10.0,
            step=0.05,
            group="sampling",
            order=25,
        ),
        _sampler(),
        _seed(),
    ),
    outputs=(_images_output("The edited pictures."),),
    cost=PixelStepsCost(
        width="image.width", height="image.height", steps="steps", batch="batch_size"
    ),
)

REMOVE_BACKGROUND = TaskSchema(
    name="remove_background",
    title="Remove background",
    description="Cut out the subject; the background becomes transparent.",
    groups=(IMAGE,),
    inputs=(
        ImageInput(
            name="image",
            label="Image",
            help="The picture to cut out; up to 8192 px a side and 40 megapixels.",
            required=True,
            max_width=8192,
            max_height=8192,
            max_pixels=40_000_000,
            group="image",
            order=10,
        ),
        BooleanInput(
            name="alpha_matting",
            label="Fine edges",
            help="Refine hair and fur edges (alpha matting); slower.",
            default=False,
            advanced=True,
            group="image",
            order=20,
        ),
        BooleanInput(
            name="only_mask",
            label="Mask only",
            help="Return the black-and-white mask instead of the cut-out.",
            default=False,
            advanced=True,
            group="image",
            order=30,
        ),
    ),
    outputs=(_image_output("The cut-out with a transparent background (or the mask), as PNG."),),
    cost=ProductCost(factors=("image.width", "image.height"), unit="pixels"),
)

UPSCALE = TaskSchema(
    name="upscale",
    title="Upscale",
    description="Enlarge a picture 2× or 4×, restoring detail (Real-ESRGAN).",
    groups=(IMAGE, SIZE),
    inputs=(
        ImageInput(
            name="image",
            label="Image",
            help="The picture to enlarge; up to 2048 px a side.",
            required=True,
            max_width=MAX_SIDE,
            max_height=MAX_SIDE,
            group="image",
            order=10,
        ),
        ChoiceInput(
            name="scale",
            label="Scale",
            help="How many times larger each side becomes.",
            default=4,
            options=(Choice(value=2, label="2×"), Choice(value=4, label="4×")),
            group="size",
            order=10,
        ),
        IntegerInput(
            name="tile_size",
            label="Tile size",
            help="Work on tiles of this many pixels to fit in GPU memory; 0 does the whole "
            "picture at once.",
            default=512,
            min=0,
            max=2048,
            step=64,
            unit="px",
            advanced=True,
            group="size",
            order=20,
        ),
    ),
    outputs=(_image_output("The enlarged picture."),),
    cost=ProductCost(
        factors=("image.width", "image.height", "scale", "scale"), unit="output pixels"
    ),
)

FINETUNE = TaskSchema(
    name="finetune",
    title="Teach a concept",
    description="Fine-tune a personal concept (a person, a pet, an object) from a few photos "
    "with DreamBooth LoRA; the result is a small adapter that other tasks can use.",
    groups=(IMAGE, PROMPT, TRAINING),
    inputs=(
        ImageListInput(
            name="instance_images",
            label="Photos",
            help="3 to 20 photos of the concept from different angles and backgrounds, at "
            "least 256 px a side.",
            required=True,
            min_count=3,
            max_count=20,
            min_width=256,
            min_height=256,
            max_width=4096,
            max_height=4096,
            max_pixels=16_777_216,
            group="image",
            order=10,
        ),
        TextInput(
            name="concept",
            label="Concept name",
            help="The name the adapter is submitted under in the model registry; generation "
            "tasks use the concept by this name.",
            required=True,
            min_length=1,
            max_length=128,
            format="concept",
            placeholder="my-dog",
            group="prompt",
            order=5,
        ),
        TextInput(
            name="concept_token",
            label="Concept token",
            help="A rare word that will stand for your concept in prompts, e.g. 'sks'.",
            required=True,
            min_length=1,
            max_length=32,
            placeholder="sks",
            group="prompt",
            order=10,
        ),
        TextInput(
            name="class_prompt",
            label="Class prompt",
            help="What the concept is an instance of, e.g. 'a photo of a dog'. Needed for prior "
            "preservation.",
            default="",
            max_length=500,
            placeholder="a photo of a dog",
            group="prompt",
            order=20,
        ),
        BooleanInput(
            name="prior_preservation",
            label="Prior preservation",
            help="Also train on generated pictures of the class, so the model does not forget "
            "what ordinary members of the class look like. Slower; needs a class prompt.",
            default=False,
            group="training",
            order=10,
        ),
        IntegerInput(
            name="rank",
            label="LoRA rank",
            help="Size of the adapter: higher captures more detail and makes a larger file.",
            default=8,
            min=1,
            max=128,
            group="training",
            order=20,
            advanced=True,
        ),
        IntegerInput(
            name="train_steps",
            label="Training steps",
            help="Optimisation steps; about 100 per photo is a good start.",
            default=800,
            min=50,
            max=5000,
            step=50,
            unit="steps",
            group="training",
            order=30,
        ),
        NumberInput(
            name="learning_rate",
            label="Learning rate",
            help="Step size of the optimiser; 1e-4 suits LoRA.",
            default=1e-4,
            min=1e-6,
            max=1e-2,
            group="training",
            order=40,
            advanced=True,
        ),
        IntegerInput(
            name="resolution",
            label="Training resolution",
            help="Photos are cropped and resized to this square size for training; Stable "
            "Diffusion 1.5 is trained at 512.",
            default=512,
            min=64,
            max=1024,
            step=64,
            unit="px",
            group="training",
            order=50,
            advanced=True,
        ),
        _seed(order=60, group="training"),
    ),
    constraints=(RequiredIf(input="class_prompt", when="prior_preservation", equals=True),),
    outputs=(
        Output(
            name="adapter",
            type="blob",
            description="The LoRA adapter (safetensors) for the concept.",
            media_type=LORA_MEDIA_TYPE,
        ),
    ),
    cost=PixelStepsCost(width="resolution", height="resolution", steps="train_steps"),
)

BUILTIN_TASKS: Mapping[str, TaskSchema] = MappingProxyType(
    schemas_by_name(
        (TXT2IMG, IMG2IMG, INPAINT, OUTPAINT, INSTRUCT_EDIT, REMOVE_BACKGROUND, UPSCALE, FINETUNE)
    )
)
"""Every built-in task by name, read-only."""

__all__ = [
    "BUILTIN_TASKS",
    "FINETUNE",
    "IMG2IMG",
    "INPAINT",
    "INSTRUCT_EDIT",
    "LORA_MEDIA_TYPE",
    "OUTPAINT",
    "REMOVE_BACKGROUND",
    "SAMPLERS",
    "TXT2IMG",
    "UPSCALE",
]
