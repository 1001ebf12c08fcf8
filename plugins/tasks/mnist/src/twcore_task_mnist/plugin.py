"""Entry point of the MNIST task plugins."""

from twcore.contract.hookspecs import hookimpl
from twcore_task_mnist.digits import Mnist
from twcore_task_mnist.mnist_aux import MnistAux
from twcore_task_mnist.multimnist import MultiMnist
from twcore_task_mnist.multitask import MnistMultitask


@hookimpl
def twcore_register_tasks(register):
    register("mnist", Mnist)
    register("mnist-multitask", MnistMultitask)
    register("multimnist", MultiMnist)
    register("mnist-aux", MnistAux)
