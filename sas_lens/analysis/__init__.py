"""What a vector is made of: attribution, the latent index, monosemanticity, overlap, figures and reports."""
