"""htgnn: multi-horizon customer lifetime value prediction with HT-GNN.

The pinned stack is the one ../shared/DESIGN.md records as installing and running
together on Python 3.11 (TensorFlow 2.21 + tf-keras + TF-GNN 1.0.3 + Beam 2.77).
"""
from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "tensorflow==2.21.*",
    "tf-keras==2.21.*",
    "tensorflow-gnn==1.0.3",
    "apache-beam==2.77.*",
    "crcmod",  # WriteToTFRecord needs a CRC package.
    "tensorflow-serving-api==2.21.*",
    "grpcio",
    "tensorboard",
    "numpy",
    "scipy",
    "pyyaml",
    "tqdm",
    "matplotlib",
    # Carries the CDNOW master log (lifetimes/datasets/CDNOW_master.txt) that the
    # demo reads as a data file; its Python code is never imported by htgnn.
    "lifetimes==0.11.3",
]

EXTRAS_REQUIRE = {
    "test": ["pytest", "pytest-timeout"],
    "benchmark": ["xgboost-cpu"],
}

setup(
    name="htgnn",
    version="0.1.0",
    description="HT-GNN customer lifetime value prediction: Beam, Keras, TF Serving",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["htgnn_tf*", "beam_pipelines*", "serving*"]),
    include_package_data=True,
    package_data={"htgnn_tf.data.specs": ["*.yaml"]},
    exclude_package_data={"": ["__pycache__/*"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["htgnn=htgnn_tf.cli:main"]},
)
