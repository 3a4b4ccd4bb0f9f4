print("dirtyscope")
