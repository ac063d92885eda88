"""What a vector is made of: attribution, the latent index, monosemanticity, the support-size curve, overlap,
figures and reports."""
