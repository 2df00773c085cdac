"""MobileNetV1's layout at width 1.0, without torch (listing backbones must not import it)."""

STEM = 32  # channels of the first 3x3 convolution (stride 2)
# Each separable block: (pointwise channels, depthwise stride).
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1),
          (512, 1), (512, 1), (1024, 2), (1024, 1))
