"""The kernel layer: the only code that touches the running kernel.

Identity (what kernel runs, which patches fit it), capabilities (can it load
livepatches, and under which conditions), and the livepatch driver (load,
wait for the transition, disable, unload). Everything takes a root path so
tests can point it at a fake /proc and /sys tree.
"""

from livepatch.kernel.capabilities import Capabilities, Check, read_capabilities
from livepatch.kernel.driver import LivepatchDriver
from livepatch.kernel.errors import (
    AccessDenied,
    AlreadyLoaded,
    BuiltForAnotherKernel,
    InvalidModule,
    KernelError,
    LivepatchUnsupported,
    LockdownRefused,
    ModuleInUse,
    ModuleLoadFailed,
    ModulesDisabled,
    NotALivepatch,
    NotPermitted,
    OutOfMemory,
    PatchStillEnabled,
    SignatureRejected,
    StalledTask,
    TransitionBusy,
    TransitionStalled,
    UnsupportedArchitecture,
    WrongKernel,
)
from livepatch.kernel.identity import KernelIdentity, read_identity
from livepatch.kernel.modinfo import ModuleInfo, check_built_for, module_name, parse_modinfo
from livepatch.kernel.results import DisableResult, LoadResult, UnloadResult
from livepatch.kernel.syscalls import LinuxModuleSyscalls, ModuleSyscalls
from livepatch.kernel.sysfs import LoadedPatch, PatchedObject
from livepatch.kernel.taint import TaintFlag, decode_taint

__all__ = [
    "AccessDenied",
    "AlreadyLoaded",
    "BuiltForAnotherKernel",
    "Capabilities",
    "Check",
    "DisableResult",
    "InvalidModule",
    "KernelError",
    "KernelIdentity",
    "LinuxModuleSyscalls",
    "LivepatchDriver",
    "LivepatchUnsupported",
    "LoadResult",
    "LoadedPatch",
    "LockdownRefused",
    "ModuleInUse",
    "ModuleInfo",
    "ModuleLoadFailed",
    "ModuleSyscalls",
    "ModulesDisabled",
    "NotALivepatch",
    "NotPermitted",
    "OutOfMemory",
    "PatchStillEnabled",
    "PatchedObject",
    "SignatureRejected",
    "StalledTask",
    "TaintFlag",
    "TransitionBusy",
    "TransitionStalled",
    "UnloadResult",
    "UnsupportedArchitecture",
    "WrongKernel",
    "check_built_for",
    "decode_taint",
    "module_name",
    "parse_modinfo",
    "read_capabilities",
    "read_identity",
]
