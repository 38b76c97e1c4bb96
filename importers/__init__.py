"""Front ends (installs as ``fodlam.importers``): each lowers a model's operations to the
canonical layers of ``fodlam.layers``. torch and onnx are imported only inside them."""
