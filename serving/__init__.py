"""TF-Serving-protocol model server and client for htgnn SavedModels.

``serving.server`` answers the official ``tensorflow_serving.apis`` gRPC services (and
the REST API) from ``<base>/<version>/`` SavedModels loaded with ``tf.saved_model.load``;
``serving.client.PredictClient`` calls them. Only TensorFlow is imported, never TF-GNN or
model code: what the server loads is exactly what the C++ ``tensorflow_model_server``
would. Import the submodules (``from serving.server import ModelServer, main``); this
package module stays light so ``import serving`` does not load TensorFlow.
"""

__all__ = ["client", "config", "errors", "model_manager", "protocol", "rest", "server"]
