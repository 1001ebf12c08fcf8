"""Entry point of the classic multitask weighting plugins (classes imported on first use)."""

from twcore.contract.hookspecs import RegisterGrid, RegisterMethod, hookimpl

METHODS = {
    "uw": "UncertaintyMethod",
    "gradnorm": "GradNormMethod",
    "dwa": "DWAMethod",
    "rlw": "RLWMethod",
    "pcgrad": "PCGradMethod",
    "mgda": "MGDAMethod",
    "mgda-ub": "MGDAUBMethod",
    "cagrad": "CAGradMethod",
    "nash-mtl": "NashMTLMethod",
    "imtl": "IMTLMethod",
    "aligned-mtl": "AlignedMTLMethod",
    "famo": "FAMOMethod",
}


@hookimpl
def twcore_register_methods(register: RegisterMethod) -> None:
    for name, cls in METHODS.items():
        register(name, f"twcore_method_mtl.methods:{cls}")


@hookimpl
def twcore_reproduction_grids(register: RegisterGrid) -> None:
    from twcore_method_mtl.grids import reproduction_grid

    register(reproduction_grid())
