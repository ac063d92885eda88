"""Topic alignment: score SAE latents against a topic's texts, steer toward the topic, evaluate it."""
