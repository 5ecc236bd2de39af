"""Built-in dataset specs (YAML), loaded by name with htgnn_tf.data.spec.load_spec."""
