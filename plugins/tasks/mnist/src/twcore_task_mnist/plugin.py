"""Entry point of the MNIST task plugins."""

from twcore.contract.hookspecs import hookimpl


@hookimpl
def twcore_register_tasks(register):
    register("mnist", "twcore_task_mnist.digits:Mnist")
    register("mnist-multitask", "twcore_task_mnist.multitask:MnistMultitask")
    register("multimnist", "twcore_task_mnist.multimnist:MultiMnist")
    register("mnist-aux", "twcore_task_mnist.mnist_aux:MnistAux")
