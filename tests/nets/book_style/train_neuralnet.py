"""A chapter-5 style training loop (the book's train_neuralnet.py as a function, for the test to call)."""

import numpy as np
from two_layer_net import TwoLayerNet


def train(x_train, t_train, x_test, t_test, iters_num=200, batch_size=20, learning_rate=0.1, hidden_size=16):
    network = TwoLayerNet(input_size=x_train.shape[1], hidden_size=hidden_size, output_size=t_train.shape[1])
    initial = {k: v.copy() for k, v in network.params.items()}
    train_size = x_train.shape[0]
    iter_per_epoch = max(train_size // batch_size, 1)
    train_loss_list, train_acc_list, test_acc_list = [], [], []

    for i in range(iters_num):
        batch_mask = np.random.choice(train_size, batch_size)  # noqa: NPY002
        x_batch = x_train[batch_mask]
        t_batch = t_train[batch_mask]

        grad = network.gradient(x_batch, t_batch)
        for key in ("W1", "b1", "W2", "b2"):
            network.params[key] -= learning_rate * grad[key]

        train_loss_list.append(network.loss(x_batch, t_batch))
        if i % iter_per_epoch == 0:
            train_acc_list.append(network.accuracy(x_train, t_train))
            test_acc_list.append(network.accuracy(x_test, t_test))

    return network, initial, train_loss_list, train_acc_list, test_acc_list
