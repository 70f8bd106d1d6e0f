"""distill-gui: knowledge distillation of language models, from a desktop app or the command line."""

import logging as _logging

__version__ = "0.1.0"


class _OptionalKernelNotice(_logging.Filter):
    """Drops bitsandbytes' import-time warning that an optional 4-bit CPU kernel could not be fetched.

    On a CPU with AVX512-BF16, importing bitsandbytes (peft does, in every run) tries the ``kernels`` package for a
    faster 4-bit matmul from the model hub and, without it, warns "Failed to load CPU gemm_4bit_forward from
    kernels-community"; bitsandbytes then uses its own kernel. The line read as a failure in every log.
    """

    def filter(self, record: _logging.LogRecord) -> bool:
        return "gemm_4bit_forward from kernels-community" not in record.getMessage()


_logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_OptionalKernelNotice())
