//! deepgen-data: MNIST-family, CIFAR-10, image folders, built-in synthetic
//! sets, the DataLoader, verified downloads and PNG grids. Not built yet: it
//! arrives with the data issue.
